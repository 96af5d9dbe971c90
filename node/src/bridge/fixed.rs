//! Fixed-point numbers as an FPGA design holds them: `fixed<W,I>` is a
//! signed two's-complement integer of W bits of which I (sign included) are
//! left of the binary point, the Vivado/Vitis HLS `ap_fixed<W,I>`
//! convention that hls4ml uses. A value is stored as its raw integer, the
//! real number times 2^(W-I).
//!
//! Products of two values carry twice the fractional bits; a dense layer
//! sums them in a wider accumulator and rounds the sum back to the format
//! once per output, the way a multiply-accumulate chain on DSP slices does.
//! Every step that can leave the range saturates instead of wrapping.
//!
//! ```
//! use mass_node::bridge::fixed::{Format, Rounding};
//! let q: Format = "fixed<16,6>".parse().unwrap();
//! // 0.1 * 2^10 = 102.4: the nearest step is 102/1024.
//! assert_eq!(q.to_f64(q.quantize(0.1, Rounding::HalfEven)), 102.0 / 1024.0);
//! // Past the range: the largest value, not a wrapped negative one.
//! assert_eq!(q.to_f64(q.quantize(100.0, Rounding::HalfEven)), 32.0 - 1.0 / 1024.0);
//! ```

use std::{fmt, str::FromStr};

use serde::{Deserialize, Serialize};

/// How a value that falls between two representable ones is rounded.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Rounding {
    /// To the nearest, ties to the even neighbour (HLS `AP_RND_CONV`):
    /// unbiased, so errors do not pile up along a long sum.
    HalfEven,
    /// Towards minus infinity, i.e. dropping the low bits (HLS `AP_TRN`,
    /// the cheapest in logic and the HLS default).
    Truncate,
}

impl FromStr for Rounding {
    type Err = String;

    fn from_str(text: &str) -> Result<Self, String> {
        match text.trim() {
            "half-even" | "half_even" => Ok(Self::HalfEven),
            "truncate" => Ok(Self::Truncate),
            other => Err(format!("'{other}' is not a rounding mode; use half-even or truncate")),
        }
    }
}

impl fmt::Display for Rounding {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Self::HalfEven => "half_even",
            Self::Truncate => "truncate",
        })
    }
}

/// `fixed<W,I>`: W bits in all, I of them (sign included) integer bits.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Format {
    total: u32,
    integer: u32,
}

impl Format {
    /// Widest format the emulation holds (raw values are `i32`).
    pub const MAX_BITS: u32 = 32;

    pub fn new(total: u32, integer: u32) -> Result<Self, String> {
        if !(2..=Self::MAX_BITS).contains(&total) {
            return Err(format!("fixed<{total},{integer}>: the width must be between 2 and {} bits", Self::MAX_BITS));
        }
        if integer == 0 || integer > total {
            return Err(format!(
                "fixed<{total},{integer}>: the integer bits (sign included) must be between 1 and the width"
            ));
        }
        Ok(Self { total, integer })
    }

    pub fn total_bits(&self) -> u32 {
        self.total
    }

    pub fn integer_bits(&self) -> u32 {
        self.integer
    }

    /// Bits right of the binary point.
    pub fn fraction_bits(&self) -> u32 {
        self.total - self.integer
    }

    /// The smallest step between two values.
    pub fn resolution(&self) -> f64 {
        (-(self.fraction_bits() as f64)).exp2()
    }

    /// Smallest and largest representable values.
    pub fn range(&self) -> (f64, f64) {
        (self.to_f64(self.min_raw() as i32), self.to_f64(self.max_raw() as i32))
    }

    fn min_raw(&self) -> i64 {
        -(1i64 << (self.total - 1))
    }

    fn max_raw(&self) -> i64 {
        (1i64 << (self.total - 1)) - 1
    }

    /// The raw value nearest `x` under `rounding`, saturated to the range.
    /// NaN becomes 0 (rows are checked for it before they reach a device).
    pub fn quantize(&self, x: f64, rounding: Rounding) -> i32 {
        if x.is_nan() {
            return 0;
        }
        let scaled = x * (self.fraction_bits() as f64).exp2();
        let rounded = match rounding {
            Rounding::HalfEven => scaled.round_ties_even(),
            Rounding::Truncate => scaled.floor(),
        };
        rounded.clamp(self.min_raw() as f64, self.max_raw() as f64) as i32
    }

    /// The real number a raw value stands for.
    pub fn to_f64(&self, raw: i32) -> f64 {
        f64::from(raw) * self.resolution()
    }

    /// Clamps a raw value of wider range into this format.
    pub fn saturate(&self, raw: i64) -> i32 {
        raw.clamp(self.min_raw(), self.max_raw()) as i32
    }
}

impl fmt::Display for Format {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "fixed<{},{}>", self.total, self.integer)
    }
}

impl FromStr for Format {
    type Err = String;

    /// Reads `fixed<16,6>` (spaces allowed, `ap_fixed<16,6>` too).
    fn from_str(text: &str) -> Result<Self, String> {
        let bad = || format!("'{text}' is not a fixed-point format such as fixed<16,6>");
        let compact: String = text.chars().filter(|c| !c.is_whitespace()).collect();
        let inner = compact
            .strip_prefix("fixed<")
            .or_else(|| compact.strip_prefix("ap_fixed<"))
            .and_then(|rest| rest.strip_suffix('>'))
            .ok_or_else(bad)?;
        let (total, integer) = inner.split_once(',').ok_or_else(bad)?;
        Self::new(total.parse().map_err(|_| bad())?, integer.parse().map_err(|_| bad())?)
    }
}

/// Divides by 2^`shift` with `rounding`: how a wide sum is cut back to the
/// format's fractional bits. Exact in integers, as the hardware is.
pub fn shift_round(value: i64, shift: u32, rounding: Rounding) -> i64 {
    if shift == 0 {
        return value;
    }
    // An arithmetic shift is the floor, which is what truncation means here.
    let floor = value >> shift;
    match rounding {
        Rounding::Truncate => floor,
        Rounding::HalfEven => {
            let rest = value - (floor << shift);
            let half = 1i64 << (shift - 1);
            if rest > half || (rest == half && floor & 1 == 1) { floor + 1 } else { floor }
        }
    }
}

/// The arithmetic of one device: its format, rounding and accumulator.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Numerics {
    pub format: Format,
    pub rounding: Rounding,
    /// Width of the multiply-accumulate register (48 on a DSP48 slice).
    pub accumulator_bits: u32,
}

impl Numerics {
    pub fn new(format: Format, rounding: Rounding, accumulator_bits: u32) -> Result<Self, String> {
        // A product of two W-bit values needs 2W bits; a narrower
        // accumulator would saturate single products.
        if accumulator_bits < 2 * format.total_bits() || accumulator_bits > 64 {
            return Err(format!(
                "a {accumulator_bits}-bit accumulator cannot hold products of {format} values: it needs between {} and 64 bits",
                2 * format.total_bits()
            ));
        }
        Ok(Self { format, rounding, accumulator_bits })
    }

    /// Limits of the accumulator.
    pub fn accumulator_range(&self) -> (i64, i64) {
        if self.accumulator_bits == 64 {
            (i64::MIN, i64::MAX)
        } else {
            (-(1i64 << (self.accumulator_bits - 1)), (1i64 << (self.accumulator_bits - 1)) - 1)
        }
    }

    /// Whether a sum of `terms` products (plus a bias) can leave the
    /// accumulator's range. When it cannot, a plain sum is exact and the
    /// emulation skips the per-step saturation.
    pub fn may_overflow(&self, terms: usize) -> bool {
        let largest_product = 1i128 << (2 * (self.format.total_bits() - 1));
        let bound = largest_product * (terms as i128 + 1);
        bound > i128::from(self.accumulator_range().1)
    }

    /// A product's raw value: twice the fractional bits.
    pub fn multiply(&self, a: i32, b: i32) -> i64 {
        i64::from(a) * i64::from(b)
    }

    /// Adds to the accumulator, saturating at its limits.
    pub fn accumulate(&self, acc: i64, term: i64) -> i64 {
        let (low, high) = self.accumulator_range();
        acc.saturating_add(term).clamp(low, high)
    }

    /// An accumulated sum (twice the fractional bits) rounded back to the format.
    pub fn round_sum(&self, acc: i64) -> i32 {
        self.format.saturate(shift_round(acc, self.format.fraction_bits(), self.rounding))
    }

    /// A raw value widened to the accumulator's scale (a bias added to a sum).
    pub fn widen(&self, raw: i32) -> i64 {
        i64::from(raw) << self.format.fraction_bits()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn q16_6() -> Format {
        "fixed<16,6>".parse().unwrap()
    }

    #[test]
    fn formats_parse_print_and_refuse_nonsense() {
        let f = q16_6();
        assert_eq!((f.total_bits(), f.integer_bits(), f.fraction_bits()), (16, 6, 10));
        assert_eq!(f.to_string(), "fixed<16,6>");
        assert_eq!("ap_fixed< 8, 3 >".parse::<Format>().unwrap().to_string(), "fixed<8,3>");
        assert_eq!(f.range(), (-32.0, 32.0 - 1.0 / 1024.0));
        for bad in ["fixed<16>", "float", "fixed<1,1>", "fixed<40,8>", "fixed<8,0>", "fixed<8,9>", "fixed<a,b>"] {
            assert!(bad.parse::<Format>().is_err(), "{bad} parsed");
        }
        let err = "fixed<40,8>".parse::<Format>().unwrap_err();
        assert!(err.contains("between 2 and 32"), "{err}");
    }

    #[test]
    fn quantizing_rounds_half_to_even_or_truncates_towards_minus_infinity() {
        let f = Format::new(8, 4).unwrap(); // steps of 1/16
        let step = 1.0 / 16.0;
        // Exactly halfway between two steps: ties go to the even raw value.
        assert_eq!(f.quantize(0.5 * step, Rounding::HalfEven), 0);
        assert_eq!(f.quantize(1.5 * step, Rounding::HalfEven), 2);
        assert_eq!(f.quantize(-0.5 * step, Rounding::HalfEven), 0);
        assert_eq!(f.quantize(-1.5 * step, Rounding::HalfEven), -2);
        assert_eq!(f.quantize(0.6 * step, Rounding::HalfEven), 1);
        // Truncation is the floor, so negative values move away from zero.
        assert_eq!(f.quantize(1.9 * step, Rounding::Truncate), 1);
        assert_eq!(f.quantize(-0.1 * step, Rounding::Truncate), -1);
        assert_eq!(f.quantize(f64::NAN, Rounding::HalfEven), 0);
    }

    #[test]
    fn quantizing_saturates_at_both_ends() {
        let f = Format::new(8, 4).unwrap(); // [-8, 8 - 1/16]
        assert_eq!(f.quantize(1e9, Rounding::HalfEven), 127);
        assert_eq!(f.quantize(-1e9, Rounding::Truncate), -128);
        assert_eq!(f.to_f64(f.quantize(7.99, Rounding::HalfEven)), 7.9375);
        assert_eq!(f.saturate(1 << 20), 127);
        assert_eq!(f.saturate(-(1 << 20)), -128);
    }

    #[test]
    fn shifting_rounds_exactly_like_quantizing() {
        // Every value of a small range: cutting 3 bits off must agree with
        // quantizing the real number.
        let f = Format::new(16, 8).unwrap();
        for raw in -300i64..300 {
            let real = raw as f64 / 8.0 * f.resolution();
            for rounding in [Rounding::HalfEven, Rounding::Truncate] {
                assert_eq!(shift_round(raw, 3, rounding), i64::from(f.quantize(real, rounding)), "{raw} {rounding}");
            }
        }
        assert_eq!(shift_round(-5, 0, Rounding::Truncate), -5);
    }

    #[test]
    fn the_accumulator_saturates_and_knows_when_it_cannot_overflow() {
        let n = Numerics::new(Format::new(16, 6).unwrap(), Rounding::HalfEven, 32).unwrap();
        assert_eq!(n.accumulator_range(), (-(1 << 31), (1 << 31) - 1));
        assert_eq!(n.accumulate((1 << 31) - 10, 100), (1 << 31) - 1);
        assert_eq!(n.accumulate(-(1 << 31) + 10, -100), -(1 << 31));
        assert!(!n.may_overflow(0), "one product and a bias fit 32 bits");
        assert!(n.may_overflow(4), "4 products of 2^30 fill 32 bits");
        let wide = Numerics::new(Format::new(16, 6).unwrap(), Rounding::HalfEven, 48).unwrap();
        assert!(!wide.may_overflow(100_000));
        assert!(wide.may_overflow(1 << 20));
        let full = Numerics::new(Format::new(32, 8).unwrap(), Rounding::HalfEven, 64).unwrap();
        assert_eq!(full.accumulate(i64::MAX - 1, 5), i64::MAX);
        assert!(Numerics::new(Format::new(16, 6).unwrap(), Rounding::HalfEven, 24).is_err());
    }

    #[test]
    fn a_product_sum_rounds_back_to_the_format() {
        let n = Numerics::new(Format::new(16, 6).unwrap(), Rounding::HalfEven, 48).unwrap();
        let f = n.format;
        let (a, b) = (f.quantize(1.5, n.rounding), f.quantize(-2.25, n.rounding));
        let sum = n.accumulate(n.widen(f.quantize(0.5, n.rounding)), n.multiply(a, b));
        assert_eq!(f.to_f64(n.round_sum(sum)), 1.5 * -2.25 + 0.5);
        // Past the range: saturated, not wrapped.
        let big = n.multiply(f.quantize(20.0, n.rounding), f.quantize(20.0, n.rounding));
        assert_eq!(f.to_f64(n.round_sum(big)), f.range().1);
    }
}
