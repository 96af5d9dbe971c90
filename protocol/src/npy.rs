//! NumPy `.npy` matrices as bytes: what a binary prediction body is, so the
//! node and the SDK write the same files. No I/O.

/// Magic bytes every `.npy` file starts with.
pub const MAGIC: &[u8] = b"\x93NUMPY";

/// `values` (row-major, `shape` their sizes: `[rows, columns]`, or
/// `[values]` for a vector) as a little-endian `.npy` file of `f4`, or
/// `f8` when `wide`.
pub fn write_matrix(values: &[f64], shape: &[usize], wide: bool) -> Vec<u8> {
    write_as(values, shape, if wide { Width::F8 } else { Width::F4 })
}

/// As [`write_matrix`], in the narrowest dtype that gives every value
/// back exactly: `u1` when all are whole numbers in 0..=255 (MNIST's
/// pixels: an eighth of the bytes to send and read), else `f4` when f32
/// holds them all (NaN too), else `f8`.
pub fn write_matrix_exact(values: &[f64], shape: &[usize]) -> Vec<u8> {
    use crate::shard_column::{fits_byte, fits_f32};
    let width = if values.iter().all(|&v| fits_byte(v)) {
        Width::U1
    } else if values.iter().all(|&v| v.is_nan() || fits_f32(v)) {
        Width::F4
    } else {
        Width::F8
    };
    write_as(values, shape, width)
}

#[derive(Clone, Copy)]
enum Width {
    U1,
    F4,
    F8,
}

fn write_as(values: &[f64], shape: &[usize], width: Width) -> Vec<u8> {
    let (descr, size) = match width {
        Width::U1 => ("|u1", 1),
        Width::F4 => ("<f4", 4),
        Width::F8 => ("<f8", 8),
    };
    let shape = match shape {
        [n] => format!("({n},)"),
        sizes => format!("({})", sizes.iter().map(usize::to_string).collect::<Vec<_>>().join(", ")),
    };
    let mut header = format!("{{'descr': '{descr}', 'fortran_order': False, 'shape': {shape}, }}");
    // Magic, version, length and header padded with spaces to 64 bytes, then '\n'.
    let unpadded = MAGIC.len() + 2 + 2 + header.len() + 1;
    header.push_str(&" ".repeat((64 - unpadded % 64) % 64));
    header.push('\n');
    let mut out = Vec::with_capacity(10 + header.len() + values.len() * size);
    out.extend_from_slice(MAGIC);
    out.extend_from_slice(&[1, 0]);
    out.extend_from_slice(&(header.len() as u16).to_le_bytes());
    out.extend_from_slice(header.as_bytes());
    for &v in values {
        match width {
            Width::U1 => out.push(v as u8),
            Width::F4 => out.extend_from_slice(&(v as f32).to_le_bytes()),
            Width::F8 => out.extend_from_slice(&v.to_le_bytes()),
        }
    }
    out
}
