//! `exp` of many f64 values at once, for softmax losses: libm's `exp`, one
//! call per value, was a tenth of training a softmax regression on MNIST.
//! A branch-free form (Cody-Waite reduction, a degree-13 polynomial, the
//! power of two put in the exponent bits) that LLVM vectorizes, compiled
//! for AVX-512 or AVX2 where the CPU has them. Plain multiplies and adds
//! (no fused multiply-add), so every width gives the same bits; within a
//! few units in the last place of libm's.

/// Below this, `exp` is under 2^-1021: it is taken as exp(-708) (3e-308),
/// which no softmax probability or sum of them can tell from zero.
const LOWEST: f64 = -708.0;
/// Above this, `exp` overflows f64.
const HIGHEST: f64 = 709.0;

const LOG2_E: f64 = std::f64::consts::LOG2_E;
/// ln 2 in two parts: `n * LN2_HI` is exact for |n| < 2^11.
const LN2_HI: f64 = 6.931_471_803_691_238e-1;
const LN2_LO: f64 = 1.908_214_929_270_587_7e-10;
/// Adding it rounds to a whole number (ties to even) in f64.
const ROUNDER: f64 = 6_755_399_441_055_744.0; // 1.5 * 2^52

/// Replaces each value by its exponential (values past the range of f64's
/// exponentials clamped to it; NaN stays NaN).
pub fn exp_in_place(values: &mut [f64]) {
    struct Op<'a>(&'a mut [f64]);
    impl pulp::WithSimd for Op<'_> {
        type Output = ();
        #[inline(always)]
        fn with_simd<S: pulp::Simd>(self, _: S) {
            for v in self.0.iter_mut() {
                *v = exp(*v);
            }
        }
    }
    #[cfg(target_arch = "x86_64")]
    {
        if let Some(simd) = pulp::x86::V4::try_new() {
            return pulp::Simd::vectorize(simd, Op(values));
        }
        if let Some(simd) = pulp::x86::V3::try_new() {
            return pulp::Simd::vectorize(simd, Op(values));
        }
    }
    pulp::WithSimd::with_simd(Op(values), pulp::Scalar::new())
}

#[inline(always)]
fn exp(x: f64) -> f64 {
    // max/min written as selects so that NaN passes through.
    let x = if x < LOWEST { LOWEST } else { x };
    let x = if x > HIGHEST { HIGHEST } else { x };
    // x = n ln 2 + r, |r| <= ln 2 / 2.
    let n = (x * LOG2_E + ROUNDER) - ROUNDER;
    let r = (x - n * LN2_HI) - n * LN2_LO;
    // e^r by its Taylor series to r^13 (error under 1e-17 for |r| <= 0.35).
    let mut p = 1.0 / 6_227_020_800.0;
    for c in [
        1.0 / 479_001_600.0,
        1.0 / 39_916_800.0,
        1.0 / 3_628_800.0,
        1.0 / 362_880.0,
        1.0 / 40_320.0,
        1.0 / 5_040.0,
        1.0 / 720.0,
        1.0 / 120.0,
        1.0 / 24.0,
        1.0 / 6.0,
        0.5,
        1.0,
        1.0,
    ] {
        p = p * r + c;
    }
    // 2^n, split in two so that n up to 1023 and down to -1021 stay normal.
    let half = (n * 0.5).floor();
    p * two_to(half) * two_to(n - half)
}

/// 2^n for a whole `n` in [-1022, 1023], from its exponent bits.
#[inline(always)]
fn two_to(n: f64) -> f64 {
    f64::from_bits(((n as i64 + 1023) as u64) << 52)
}

#[cfg(test)]
mod tests {
    use super::*;
    use rand::{Rng, SeedableRng, rngs::StdRng};

    fn ulps(a: f64, b: f64) -> u64 {
        a.to_bits().abs_diff(b.to_bits())
    }

    #[test]
    fn exponentials_are_libms_within_a_few_ulps() {
        let mut rng = StdRng::seed_from_u64(1);
        let mut values: Vec<f64> = (0..100_000).map(|_| rng.random_range(-700.0..700.0)).collect();
        values.extend((0..100_000).map(|_| rng.random_range(-40.0..0.0)));
        values.extend([0.0, -0.0, 1.0, -1.0, 1e-300, -1e-300, 0.5 * std::f64::consts::LN_2, -708.0, 709.0]);
        let mut got = values.clone();
        exp_in_place(&mut got);
        for (x, e) in values.iter().zip(&got) {
            assert!(ulps(*e, x.exp()) <= 4, "exp({x}) = {e}, libm {}", x.exp());
        }
    }

    #[test]
    fn every_width_gives_the_same_bits_and_the_edges_hold() {
        let mut rng = StdRng::seed_from_u64(2);
        let values: Vec<f64> = (0..1003).map(|_| rng.random_range(-800.0..800.0)).collect();
        let mut wide = values.clone();
        exp_in_place(&mut wide);
        let scalar: Vec<f64> = values.iter().map(|&x| exp(x)).collect();
        assert!(wide.iter().zip(&scalar).all(|(a, b)| a.to_bits() == b.to_bits()));
        let mut edges = [f64::NAN, f64::NEG_INFINITY, -1e9, 1e9, f64::INFINITY];
        exp_in_place(&mut edges);
        assert!(edges[0].is_nan());
        assert_eq!(edges[1], exp(LOWEST));
        assert_eq!(edges[2], exp(LOWEST));
        assert!(edges[3].is_finite() && edges[3] > 8e307 && edges[4] == edges[3]);
    }
}
