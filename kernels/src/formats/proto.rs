//! A protobuf wire-format writer with just what ONNX's messages need:
//! varints, 32-bit floats, length-delimited fields (strings, bytes, nested
//! messages) and packed repeated numbers. Writing by hand keeps a code
//! generator and its build step out of the tree; the format is small and
//! fixed (<https://protobuf.dev/programming-guides/encoding/>).

/// Wire types of the fields this writer emits.
const VARINT: u64 = 0;
const LENGTH_DELIMITED: u64 = 2;
const FIXED32: u64 = 5;

/// One message being written, field by field, in call order.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Message {
    bytes: Vec<u8>,
}

impl Message {
    pub fn new() -> Self {
        Self::default()
    }

    fn key(&mut self, field: u32, wire: u64) {
        varint(&mut self.bytes, (u64::from(field) << 3) | wire);
    }

    /// An `int32`/`int64`/enum field; negatives take ten bytes, as the format says.
    pub fn int(mut self, field: u32, value: i64) -> Self {
        self.key(field, VARINT);
        varint(&mut self.bytes, value as u64);
        self
    }

    pub fn float(mut self, field: u32, value: f32) -> Self {
        self.key(field, FIXED32);
        self.bytes.extend_from_slice(&value.to_le_bytes());
        self
    }

    pub fn bytes(mut self, field: u32, value: &[u8]) -> Self {
        self.key(field, LENGTH_DELIMITED);
        varint(&mut self.bytes, value.len() as u64);
        self.bytes.extend_from_slice(value);
        self
    }

    pub fn string(self, field: u32, value: &str) -> Self {
        self.bytes(field, value.as_bytes())
    }

    pub fn message(self, field: u32, value: Message) -> Self {
        self.bytes(field, &value.bytes)
    }

    /// A repeated integer field, packed (one length-delimited run).
    pub fn packed_ints(self, field: u32, values: &[i64]) -> Self {
        let mut run = Vec::with_capacity(values.len());
        for v in values {
            varint(&mut run, *v as u64);
        }
        self.bytes(field, &run)
    }

    /// A repeated float field, packed.
    pub fn packed_floats(self, field: u32, values: &[f32]) -> Self {
        let run: Vec<u8> = values.iter().flat_map(|v| v.to_le_bytes()).collect();
        self.bytes(field, &run)
    }

    pub fn into_bytes(self) -> Vec<u8> {
        self.bytes
    }
}

/// Base-128 varint, least significant group first.
fn varint(out: &mut Vec<u8>, mut value: u64) {
    while value >= 0x80 {
        out.push((value as u8 & 0x7f) | 0x80);
        value >>= 7;
    }
    out.push(value as u8);
}

/// A reader of the same subset, for tests that check what was written.
#[cfg(test)]
pub(crate) mod read {
    /// A field's value as it sits on the wire.
    #[derive(Debug, Clone, PartialEq)]
    pub enum Value {
        Varint(u64),
        Fixed32(u32),
        Bytes(Vec<u8>),
    }

    impl Value {
        pub fn bytes(&self) -> &[u8] {
            match self {
                Value::Bytes(b) => b,
                other => panic!("expected a length-delimited field, got {other:?}"),
            }
        }

        pub fn text(&self) -> &str {
            std::str::from_utf8(self.bytes()).expect("UTF-8")
        }

        pub fn int(&self) -> i64 {
            match self {
                Value::Varint(v) => *v as i64,
                other => panic!("expected a varint, got {other:?}"),
            }
        }
    }

    fn varint(bytes: &[u8], at: &mut usize) -> u64 {
        let mut value = 0u64;
        for shift in (0..64).step_by(7) {
            let b = bytes[*at];
            *at += 1;
            value |= u64::from(b & 0x7f) << shift;
            if b < 0x80 {
                break;
            }
        }
        value
    }

    /// Every top-level field of a message, in order.
    pub fn fields(bytes: &[u8]) -> Vec<(u32, Value)> {
        let mut at = 0;
        let mut out = Vec::new();
        while at < bytes.len() {
            let key = varint(bytes, &mut at);
            let value = match key & 7 {
                0 => Value::Varint(varint(bytes, &mut at)),
                5 => {
                    let v = u32::from_le_bytes(bytes[at..at + 4].try_into().unwrap());
                    at += 4;
                    Value::Fixed32(v)
                }
                2 => {
                    let len = varint(bytes, &mut at) as usize;
                    at += len;
                    Value::Bytes(bytes[at - len..at].to_vec())
                }
                wire => panic!("wire type {wire} is not written here"),
            };
            out.push(((key >> 3) as u32, value));
        }
        out
    }

    /// The values of field `field`, in order.
    pub fn all(bytes: &[u8], field: u32) -> Vec<Value> {
        fields(bytes).into_iter().filter(|(f, _)| *f == field).map(|(_, v)| v).collect()
    }

    /// The one value of field `field`.
    pub fn one(bytes: &[u8], field: u32) -> Value {
        let mut found = all(bytes, field);
        assert_eq!(found.len(), 1, "field {field} appears {} times", found.len());
        found.remove(0)
    }

    /// A packed run of varints.
    pub fn packed(bytes: &[u8]) -> Vec<i64> {
        let mut at = 0;
        let mut out = Vec::new();
        while at < bytes.len() {
            out.push(varint(bytes, &mut at) as i64);
        }
        out
    }
}

#[cfg(test)]
mod tests {
    use super::{read::*, *};

    /// The examples of the protobuf encoding guide, byte for byte.
    #[test]
    fn fields_encode_as_the_protobuf_guide_shows() {
        assert_eq!(Message::new().int(1, 150).into_bytes(), [0x08, 0x96, 0x01]);
        assert_eq!(Message::new().string(2, "testing").into_bytes(), b"\x12\x07testing");
        let nested = Message::new().message(3, Message::new().int(1, 150)).into_bytes();
        assert_eq!(nested, [0x1a, 0x03, 0x08, 0x96, 0x01]);
        let packed = Message::new().packed_ints(4, &[3, 270, 86942]).into_bytes();
        assert_eq!(packed, [0x22, 0x06, 0x03, 0x8e, 0x02, 0x9e, 0xa7, 0x05]);
        // Negative integers are sign-extended to 64 bits: ten bytes.
        let negative = Message::new().int(1, -1).into_bytes();
        assert_eq!(negative.len(), 11);
        assert_eq!(*negative.last().unwrap(), 0x01);
        assert_eq!(Message::new().float(2, 1.0).into_bytes(), [0x15, 0x00, 0x00, 0x80, 0x3f]);
    }

    #[test]
    fn what_is_written_reads_back() {
        let inner = Message::new().string(1, "x").int(2, -7);
        let bytes = Message::new().int(1, 1 << 40).message(2, inner).packed_ints(3, &[0, -2, 5]).into_bytes();
        assert_eq!(one(&bytes, 1).int(), 1 << 40);
        let inner = one(&bytes, 2);
        assert_eq!(one(inner.bytes(), 1).text(), "x");
        assert_eq!(one(inner.bytes(), 2).int(), -7);
        assert_eq!(packed(one(&bytes, 3).bytes()), [0, -2, 5]);
    }
}
