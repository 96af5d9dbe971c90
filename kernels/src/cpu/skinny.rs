//! Products with few output columns: a linear model's classes (MNIST: rows
//! x 784 by 784 x 10, and its gradient 784 x rows by rows x 10) and a
//! network's last layer. faer's general kernels tile the 10 columns as
//! 4 + 4 + 2 and read the rows once per tile; these read each row once
//! for every column, with all the column sums in registers (AVX-512).
//! `None` where the CPU lacks AVX-512 or the shape is not skinny: the
//! caller uses the general product.

use ndarray::{Array2, ArrayView2};

/// Calls `$kernel::<K>` for the runtime column count `$k` (1..=12).
macro_rules! by_columns {
    ($simd:expr, $k:expr, $kernel:ident, $($arg:expr),*) => {{
        #[cfg(target_arch = "x86_64")]
        match $k {
            1 => x86::$kernel::<1, _>($simd, $($arg),*),
            2 => x86::$kernel::<2, _>($simd, $($arg),*),
            3 => x86::$kernel::<3, _>($simd, $($arg),*),
            4 => x86::$kernel::<4, _>($simd, $($arg),*),
            5 => x86::$kernel::<5, _>($simd, $($arg),*),
            6 => x86::$kernel::<6, _>($simd, $($arg),*),
            7 => x86::$kernel::<7, _>($simd, $($arg),*),
            8 => x86::$kernel::<8, _>($simd, $($arg),*),
            9 => x86::$kernel::<9, _>($simd, $($arg),*),
            10 => x86::$kernel::<10, _>($simd, $($arg),*),
            11 => x86::$kernel::<11, _>($simd, $($arg),*),
            _ => x86::$kernel::<12, _>($simd, $($arg),*),
        }
        #[cfg(not(target_arch = "x86_64"))]
        {
            let _ = ($simd, $($arg),*);
            unreachable!("avx512() is None off x86-64")
        }
    }};
}

/// Most output columns the kernels take (two rows of sums per column in
/// registers, plus the operands, fit AVX-512's 32 registers).
pub const MAX_COLUMNS: usize = 12;

/// `a bᵀ` for `a` (n x d) and `b` (k x d, a row per output column), both
/// in standard layout, with `1 <= k <= MAX_COLUMNS`: a linear layer's
/// outputs, `b` its weights by output.
pub fn product_nt(a: ArrayView2<'_, f32>, b: ArrayView2<'_, f32>) -> Option<Array2<f32>> {
    nt(a, b)
}

/// [`product_nt`] of rows of bytes, each read as the f32 of its value.
pub fn product_nt_bytes(a: ArrayView2<'_, u8>, b: ArrayView2<'_, f32>) -> Option<Array2<f32>> {
    nt(a, b)
}

/// `cᵀ a` for `c` (n x k) and `a` (n x d), both in standard layout, with
/// `1 <= k <= MAX_COLUMNS`: a linear layer's gradient (k x d) from its
/// inputs `a` and its outputs' gradients `c`.
pub fn product_tn(c: ArrayView2<'_, f32>, a: ArrayView2<'_, f32>) -> Option<Array2<f32>> {
    tn(c, a)
}

/// [`product_tn`] of rows of bytes, each read as the f32 of its value.
pub fn product_tn_bytes(c: ArrayView2<'_, f32>, a: ArrayView2<'_, u8>) -> Option<Array2<f32>> {
    tn(c, a)
}

/// Whether the kernels run here (AVX-512).
pub fn available() -> bool {
    avx512().is_some()
}

/// What the kernels read rows of: f32, or bytes widened as they are read
/// (a quarter of the memory for the same rows).
trait Element: Copy + Default + 'static {
    /// Sixteen values as f32 lanes.
    #[cfg(target_arch = "x86_64")]
    fn lanes(simd: pulp::x86::V4, values: &[Self]) -> std::arch::x86_64::__m512;
}

impl Element for f32 {
    #[cfg(target_arch = "x86_64")]
    #[inline(always)]
    fn lanes(_: pulp::x86::V4, values: &[f32]) -> std::arch::x86_64::__m512 {
        pulp::cast(*<&[f32; 16]>::try_from(values).expect("a register's worth"))
    }
}

impl Element for u8 {
    #[cfg(target_arch = "x86_64")]
    #[inline(always)]
    fn lanes(simd: pulp::x86::V4, values: &[u8]) -> std::arch::x86_64::__m512 {
        let bytes: std::arch::x86_64::__m128i = pulp::cast(*<&[u8; 16]>::try_from(values).expect("16 bytes"));
        let f = simd.avx512f;
        f._mm512_cvtepi32_ps(f._mm512_cvtepu8_epi32(bytes))
    }
}

fn nt<T: Element>(a: ArrayView2<'_, T>, b: ArrayView2<'_, f32>) -> Option<Array2<f32>> {
    let (n, d) = a.dim();
    let k = b.nrows();
    if b.ncols() != d || !(1..=MAX_COLUMNS).contains(&k) {
        return None;
    }
    let simd = avx512()?;
    let (a, b) = (a.as_slice()?, b.as_slice()?);
    let mut out = Array2::<f32>::zeros((n, k));
    let dst = out.as_slice_mut()?;
    by_columns!(simd, k, forward, a, n, d, b, dst);
    Some(out)
}

fn tn<T: Element>(c: ArrayView2<'_, f32>, a: ArrayView2<'_, T>) -> Option<Array2<f32>> {
    let (n, d) = a.dim();
    let k = c.ncols();
    if c.nrows() != n || !(1..=MAX_COLUMNS).contains(&k) {
        return None;
    }
    let simd = avx512()?;
    let (a, c) = (a.as_slice()?, c.as_slice()?);
    let mut out = Array2::<f32>::zeros((k, d));
    let dst = out.as_slice_mut()?;
    by_columns!(simd, k, backward, a, n, d, c, dst);
    Some(out)
}

#[cfg(target_arch = "x86_64")]
fn avx512() -> Option<pulp::x86::V4> {
    pulp::x86::V4::try_new()
}

#[cfg(not(target_arch = "x86_64"))]
fn avx512() -> Option<()> {
    None
}

#[cfg(target_arch = "x86_64")]
mod x86 {
    use super::Element;
    use pulp::x86::V4;
    use std::arch::x86_64::__m512;

    /// Lanes of an AVX-512 register of f32.
    const LANES: usize = 16;

    #[inline(always)]
    fn load<T: Element>(simd: V4, values: &[T]) -> __m512 {
        T::lanes(simd, values)
    }

    /// The first `values.len()` (< 16) lanes, the rest zero.
    #[inline(always)]
    fn load_part<T: Element>(simd: V4, values: &[T]) -> __m512 {
        let mut lanes = [T::default(); LANES];
        lanes[..values.len()].copy_from_slice(values);
        T::lanes(simd, &lanes)
    }

    fn store(into: &mut [f32], v: __m512) {
        let lanes: [f32; LANES] = pulp::cast(v);
        into.copy_from_slice(&lanes[..into.len()]);
    }

    /// `out (n x K) = a (n x d) · btᵀ`, `bt` holding the K columns of b as
    /// rows of d: two rows of `a` at a time against every column.
    pub fn forward<const K: usize, T: Element>(simd: V4, a: &[T], n: usize, d: usize, bt: &[f32], out: &mut [f32]) {
        struct Op<'a, const K: usize, T>(V4, &'a [T], usize, usize, &'a [f32], &'a mut [f32]);
        impl<const K: usize, T: Element> pulp::WithSimd for Op<'_, K, T> {
            type Output = ();
            #[inline(always)]
            fn with_simd<S: pulp::Simd>(self, _: S) {
                let Op(simd, a, n, d, bt, out) = self;
                let f = simd.avx512f;
                let full = d / LANES * LANES;
                let columns: [&[f32]; K] = std::array::from_fn(|o| &bt[o * d..(o + 1) * d]);
                let mut r = 0;
                while r < n {
                    // Two rows share each load of the weights; an odd last row goes alone.
                    let pair = r + 1 < n;
                    let x0 = &a[r * d..(r + 1) * d];
                    let x1 = if pair { &a[(r + 1) * d..(r + 2) * d] } else { x0 };
                    let mut s0 = [f._mm512_setzero_ps(); K];
                    let mut s1 = [f._mm512_setzero_ps(); K];
                    let mut c = 0;
                    while c < full {
                        let (v0, v1) = (load(simd, &x0[c..c + LANES]), load(simd, &x1[c..c + LANES]));
                        for o in 0..K {
                            let w = load(simd, &columns[o][c..c + LANES]);
                            s0[o] = f._mm512_fmadd_ps(v0, w, s0[o]);
                            s1[o] = f._mm512_fmadd_ps(v1, w, s1[o]);
                        }
                        c += LANES;
                    }
                    if c < d {
                        let (v0, v1) = (load_part(simd, &x0[c..]), load_part(simd, &x1[c..]));
                        for o in 0..K {
                            let w = load_part(simd, &columns[o][c..]);
                            s0[o] = f._mm512_fmadd_ps(v0, w, s0[o]);
                            s1[o] = f._mm512_fmadd_ps(v1, w, s1[o]);
                        }
                    }
                    for o in 0..K {
                        out[r * K + o] = f._mm512_reduce_add_ps(s0[o]);
                        if pair {
                            out[(r + 1) * K + o] = f._mm512_reduce_add_ps(s1[o]);
                        }
                    }
                    r += 2;
                }
            }
        }
        debug_assert!(a.len() == n * d && bt.len() == K * d && out.len() == n * K);
        pulp::Simd::vectorize(simd, Op::<K, T>(simd, a, n, d, bt, out));
    }

    /// `sums (K x d) = cᵀ a` for `a` (n x d) and `c` (n x K): for 32
    /// columns of `a` at a time, every row's part of all K sums.
    pub fn backward<const K: usize, T: Element>(simd: V4, a: &[T], n: usize, d: usize, c: &[f32], sums: &mut [f32]) {
        struct Op<'a, const K: usize, T>(V4, &'a [T], usize, usize, &'a [f32], &'a mut [f32]);
        impl<const K: usize, T: Element> pulp::WithSimd for Op<'_, K, T> {
            type Output = ();
            #[inline(always)]
            fn with_simd<S: pulp::Simd>(self, _: S) {
                let Op(simd, a, n, d, c, sums) = self;
                let f = simd.avx512f;
                let mut col = 0;
                while col < d {
                    // Two registers of columns, or what is left of them.
                    let width = (d - col).min(2 * LANES);
                    let low = width.min(LANES);
                    let mut s0 = [f._mm512_setzero_ps(); K];
                    let mut s1 = [f._mm512_setzero_ps(); K];
                    let mut add_row = |v0, v1, g: &[f32; K]| {
                        for o in 0..K {
                            let go = f._mm512_set1_ps(g[o]);
                            s0[o] = f._mm512_fmadd_ps(v0, go, s0[o]);
                            s1[o] = f._mm512_fmadd_ps(v1, go, s1[o]);
                        }
                    };
                    let rows = a.chunks_exact(d).zip(c.as_chunks::<K>().0).take(n);
                    if width == 2 * LANES {
                        for (row, g) in rows {
                            let part = &row[col..col + 2 * LANES];
                            add_row(load(simd, &part[..LANES]), load(simd, &part[LANES..]), g);
                        }
                    } else {
                        for (row, g) in rows {
                            let part = &row[col..col + width];
                            add_row(load_part(simd, &part[..low]), load_part(simd, &part[low..]), g);
                        }
                    }
                    for o in 0..K {
                        let at = o * d + col;
                        store(&mut sums[at..at + low], s0[o]);
                        store(&mut sums[at + low..at + width], s1[o]);
                    }
                    col += width;
                }
            }
        }
        debug_assert!(a.len() == n * d && c.len() == n * K && sums.len() == K * d);
        pulp::Simd::vectorize(simd, Op::<K, T>(simd, a, n, d, c, sums));
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use rand::{Rng, SeedableRng, rngs::StdRng};

    fn random(rows: usize, cols: usize, rng: &mut StdRng) -> Array2<f32> {
        Array2::from_shape_fn((rows, cols), |_| rng.random_range(-1.0..1.0))
    }

    /// The product in f64, for the f32 kernels to be within rounding of.
    fn exact(a: &Array2<f32>, b: &Array2<f32>) -> Array2<f64> {
        a.mapv(f64::from).dot(&b.mapv(f64::from))
    }

    fn close(got: &Array2<f32>, want: &Array2<f64>, what: &str) {
        assert_eq!(got.dim(), want.dim(), "{what}");
        for (g, w) in got.iter().zip(want) {
            assert!((f64::from(*g) - w).abs() <= 1e-4 * (1.0 + w.abs()), "{what}: {g} vs {w}");
        }
    }

    #[test]
    fn both_products_agree_with_the_exact_ones_on_every_shape() {
        if avx512().is_none() {
            eprintln!("no AVX-512 here: the general product is used, nothing to check");
            return;
        }
        let mut rng = StdRng::seed_from_u64(5);
        // Rows odd and even, depths under a register, at a register's
        // edges and past two, every column count.
        for (n, d) in [(1, 1), (2, 15), (3, 16), (7, 31), (8, 32), (9, 33), (5, 47), (64, 784), (0, 20)] {
            for k in 1..=MAX_COLUMNS {
                let (a, b, c) = (random(n, d, &mut rng), random(k, d, &mut rng), random(n, k, &mut rng));
                let nt = product_nt(a.view(), b.view()).unwrap();
                close(&nt, &exact(&a, &b.t().to_owned()), &format!("a bᵀ, {n}x{d}x{k}"));
                let tn = product_tn(c.view(), a.view()).unwrap();
                close(&tn, &exact(&c.t().to_owned(), &a), &format!("cᵀ a, {n}x{d}x{k}"));
            }
        }
    }

    #[test]
    fn rows_of_bytes_give_the_bits_of_the_same_rows_as_f32() {
        if avx512().is_none() {
            eprintln!("no AVX-512 here: nothing to check");
            return;
        }
        let mut rng = StdRng::seed_from_u64(6);
        for (n, d, k) in [(1, 5, 3), (7, 31, 10), (8, 33, 12), (64, 784, 10), (3, 16, 1)] {
            let bytes = Array2::from_shape_fn((n, d), |_| rng.random::<u8>());
            let wide = bytes.mapv(f32::from);
            let (b, c) = (random(k, d, &mut rng), random(n, k, &mut rng));
            assert_eq!(product_nt_bytes(bytes.view(), b.view()), product_nt(wide.view(), b.view()), "{n}x{d}x{k}");
            assert_eq!(product_tn_bytes(c.view(), bytes.view()), product_tn(c.view(), wide.view()), "{n}x{d}x{k}");
        }
    }

    #[test]
    fn other_shapes_are_left_to_the_general_product() {
        let a = Array2::<f32>::zeros((4, 8));
        assert!(product_nt(a.view(), Array2::<f32>::zeros((MAX_COLUMNS + 1, 8)).view()).is_none());
        assert!(product_nt(a.view(), Array2::<f32>::zeros((3, 7)).view()).is_none());
        assert!(product_tn(Array2::<f32>::zeros((4, 0)).view(), a.view()).is_none());
        assert!(product_tn(Array2::<f32>::zeros((5, 2)).view(), a.view()).is_none());
        assert!(product_nt(a.t(), Array2::<f32>::zeros((3, 4)).view()).is_none(), "not in standard layout");
    }
}
