//! NumPy `.npy` matrices as bytes: what a binary prediction body is, so the
//! node and the SDK write the same files. No I/O.

/// Magic bytes every `.npy` file starts with.
pub const MAGIC: &[u8] = b"\x93NUMPY";

/// `values` (row-major, `shape` their sizes: `[rows, columns]`, or
/// `[values]` for a vector) as a little-endian `.npy` file of `f4`, or
/// `f8` when `wide`.
pub fn write_matrix(values: &[f64], shape: &[usize], wide: bool) -> Vec<u8> {
    let descr = if wide { "<f8" } else { "<f4" };
    let shape = match shape {
        [n] => format!("({n},)"),
        sizes => format!("({})", sizes.iter().map(usize::to_string).collect::<Vec<_>>().join(", ")),
    };
    let mut header = format!("{{'descr': '{descr}', 'fortran_order': False, 'shape': {shape}, }}");
    // Magic, version, length and header padded with spaces to 64 bytes, then '\n'.
    let unpadded = MAGIC.len() + 2 + 2 + header.len() + 1;
    header.push_str(&" ".repeat((64 - unpadded % 64) % 64));
    header.push('\n');
    let mut out = Vec::with_capacity(10 + header.len() + values.len() * if wide { 8 } else { 4 });
    out.extend_from_slice(MAGIC);
    out.extend_from_slice(&[1, 0]);
    out.extend_from_slice(&(header.len() as u16).to_le_bytes());
    out.extend_from_slice(header.as_bytes());
    for v in values {
        if wide {
            out.extend_from_slice(&v.to_le_bytes());
        } else {
            out.extend_from_slice(&(*v as f32).to_le_bytes());
        }
    }
    out
}
