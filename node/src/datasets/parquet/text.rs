//! Parquet values as the text a CSV cell of the same data would hold.
//!
//! Numbers are written so that the CSV path parses them to the very same
//! `f64`: integers in full, floats in their shortest round-trip form (Rust's
//! `{:?}`, which keeps a `.0` on whole floats as Python's `repr` and pandas'
//! `to_csv` do), decimals as their exact decimal text.

use std::io::Write;

use parquet::basic::TimeUnit;

pub(super) fn boolean(value: bool, out: &mut Vec<u8>) {
    out.extend_from_slice(if value { b"true" } else { b"false" });
}

pub(super) fn integer(value: i128, out: &mut Vec<u8>) {
    let _ = write!(out, "{value}");
}

pub(super) fn float32(value: f32, out: &mut Vec<u8>) {
    // f32's own shortest form: the digits a CSV of a float32 column holds.
    let _ = write!(out, "{value:?}");
}

pub(super) fn float64(value: f64, out: &mut Vec<u8>) {
    let _ = write!(out, "{value:?}");
}

/// `unscaled × 10^-scale` in decimal: `12345`, scale 2 → `123.45`.
pub(super) fn decimal(unscaled: i128, scale: u32, out: &mut Vec<u8>) {
    let digits = unscaled.unsigned_abs().to_string();
    if unscaled < 0 {
        out.push(b'-');
    }
    let scale = scale as usize;
    if scale == 0 {
        out.extend_from_slice(digits.as_bytes());
        return;
    }
    // At least one digit before the point: 5, scale 2 → 0.05.
    let padded = format!("{digits:0>width$}", width = scale + 1);
    let (whole, fraction) = padded.split_at(padded.len() - scale);
    out.extend_from_slice(whole.as_bytes());
    out.push(b'.');
    out.extend_from_slice(fraction.as_bytes());
}

/// A big-endian two's complement integer (a decimal's unscaled value).
pub(super) fn big_endian(bytes: &[u8]) -> Result<i128, String> {
    if bytes.len() > 16 {
        return Err(format!("a decimal of {} bytes; at most 16 (38 digits) can be read", bytes.len()));
    }
    let negative = bytes.first().is_some_and(|b| b & 0x80 != 0);
    Ok(bytes.iter().fold(if negative { -1 } else { 0 }, |value, &b| (value << 8) | i128::from(b)))
}

/// `YYYY-MM-DD` of a day counted from 1970-01-01.
pub(super) fn date(days: i64, out: &mut Vec<u8>) {
    let (year, month, day) = civil(days);
    let _ = write!(out, "{year:04}-{month:02}-{day:02}");
}

/// `HH:MM:SS`, with a fraction when there is one, of a time since midnight.
pub(super) fn time(value: i64, unit: TimeUnit, out: &mut Vec<u8>) {
    let per_second = per_second(unit);
    let seconds = value.div_euclid(per_second);
    clock(seconds.rem_euclid(86_400), value.rem_euclid(per_second), unit, out);
}

/// ISO 8601 `YYYY-MM-DDTHH:MM:SS[.fraction][Z]` of a time since the epoch;
/// `Z` when the writer said it is UTC.
pub(super) fn timestamp(value: i64, unit: TimeUnit, utc: bool, out: &mut Vec<u8>) {
    let per_second = per_second(unit);
    let seconds = value.div_euclid(per_second);
    date(seconds.div_euclid(86_400), out);
    out.push(b'T');
    clock(seconds.rem_euclid(86_400), value.rem_euclid(per_second), unit, out);
    if utc {
        out.push(b'Z');
    }
}

/// The legacy INT96 timestamp (Impala, older Spark): nanoseconds of the day,
/// then the Julian day.
pub(super) fn int96(words: &[u32], out: &mut Vec<u8>) {
    const JULIAN_DAY_OF_EPOCH: i64 = 2_440_588;
    const NANOS_PER_DAY: i64 = 86_400 * 1_000_000_000;
    let (low, high, day) = (words[0], words[1], words[2]);
    let nanos = ((u64::from(high) << 32) | u64::from(low)) as i64;
    let days = i64::from(day) - JULIAN_DAY_OF_EPOCH + nanos.div_euclid(NANOS_PER_DAY);
    timestamp(days * 86_400 * 1_000_000_000 + nanos.rem_euclid(NANOS_PER_DAY), TimeUnit::NANOS, false, out);
}

/// `8-4-4-4-12` lowercase hex.
pub(super) fn uuid(bytes: &[u8], out: &mut Vec<u8>) {
    for (i, b) in bytes.iter().enumerate() {
        if matches!(i, 4 | 6 | 8 | 10) {
            out.push(b'-');
        }
        let _ = write!(out, "{b:02x}");
    }
}

fn per_second(unit: TimeUnit) -> i64 {
    match unit {
        TimeUnit::MILLIS => 1_000,
        TimeUnit::MICROS => 1_000_000,
        TimeUnit::NANOS => 1_000_000_000,
    }
}

fn clock(second_of_day: i64, fraction: i64, unit: TimeUnit, out: &mut Vec<u8>) {
    let _ = write!(out, "{:02}:{:02}:{:02}", second_of_day / 3600, second_of_day / 60 % 60, second_of_day % 60);
    if fraction != 0 {
        let width = match unit {
            TimeUnit::MILLIS => 3,
            TimeUnit::MICROS => 6,
            TimeUnit::NANOS => 9,
        };
        let digits = format!("{fraction:0width$}");
        out.push(b'.');
        out.extend_from_slice(digits.trim_end_matches('0').as_bytes());
    }
}

/// (year, month, day) of a day counted from 1970-01-01, in the proleptic
/// Gregorian calendar (H. Hinnant's `civil_from_days`).
fn civil(days: i64) -> (i64, i64, i64) {
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let day_of_era = z.rem_euclid(146_097);
    let year_of_era = (day_of_era - day_of_era / 1460 + day_of_era / 36_524 - day_of_era / 146_096) / 365;
    let day_of_year = day_of_era - (365 * year_of_era + year_of_era / 4 - year_of_era / 100);
    let shifted_month = (5 * day_of_year + 2) / 153;
    let day = day_of_year - (153 * shifted_month + 2) / 5 + 1;
    let month = if shifted_month < 10 { shifted_month + 3 } else { shifted_month - 9 };
    (year_of_era + era * 400 + i64::from(month <= 2), month, day)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn text(write: impl FnOnce(&mut Vec<u8>)) -> String {
        let mut out = Vec::new();
        write(&mut out);
        String::from_utf8(out).unwrap()
    }

    #[test]
    fn numbers_parse_back_to_the_same_f64() {
        for value in [0.1, 1.0 / 3.0, 5.1, 2.0, -0.0, 1e21, 1e-7, 123456789.123, f64::MAX, f64::MIN_POSITIVE] {
            let cell = text(|o| float64(value, o));
            assert_eq!(cell.parse::<f64>().unwrap().to_bits(), value.to_bits(), "{cell}");
        }
        assert_eq!(text(|o| float64(2.0, o)), "2.0");
        assert_eq!(text(|o| float32(0.1, o)), "0.1", "a float32 as its own shortest digits");
        assert_eq!(text(|o| float64(f64::NAN, o)), "NaN", "read as missing, as in a CSV");
        assert_eq!(text(|o| integer(-42, o)), "-42");
        assert_eq!(text(|o| integer(u64::MAX.into(), o)), "18446744073709551615");
    }

    #[test]
    fn decimals_are_exact() {
        assert_eq!(text(|o| decimal(12345, 2, o)), "123.45");
        assert_eq!(text(|o| decimal(-5, 2, o)), "-0.05");
        assert_eq!(text(|o| decimal(150, 2, o)), "1.50");
        assert_eq!(text(|o| decimal(7, 0, o)), "7");
        assert_eq!(big_endian(&[0xff, 0x85]).unwrap(), -123);
        assert_eq!(big_endian(&[0x30, 0x39]).unwrap(), 12345);
        assert_eq!(big_endian(&[]).unwrap(), 0);
        assert!(big_endian(&[0; 17]).unwrap_err().contains("17 bytes"));
    }

    #[test]
    fn dates_and_times_are_iso_8601() {
        assert_eq!(text(|o| date(0, o)), "1970-01-01");
        assert_eq!(text(|o| date(19_723, o)), "2024-01-01");
        assert_eq!(text(|o| date(-1, o)), "1969-12-31");
        assert_eq!(text(|o| date(11_016, o)), "2000-02-29");
        assert_eq!(text(|o| timestamp(1_704_067_200_123, TimeUnit::MILLIS, true, o)), "2024-01-01T00:00:00.123Z");
        assert_eq!(text(|o| timestamp(-1, TimeUnit::MICROS, false, o)), "1969-12-31T23:59:59.999999");
        assert_eq!(text(|o| timestamp(3_600_000_000_000, TimeUnit::NANOS, false, o)), "1970-01-01T01:00:00");
        assert_eq!(text(|o| time(45_296_500, TimeUnit::MILLIS, o)), "12:34:56.5");
        // 2024-01-01 00:00:01 as Impala writes it.
        assert_eq!(text(|o| int96(&[1_000_000_000, 0, 2_460_311], o)), "2024-01-01T00:00:01");
        assert_eq!(
            text(|o| uuid(
                &[0x12, 0x3e, 0x45, 0x67, 0xe8, 0x9b, 0x12, 0xd3, 0xa4, 0x56, 0x42, 0x66, 0x14, 0x17, 0x40, 0x00],
                o
            )),
            "123e4567-e89b-12d3-a456-426614174000"
        );
    }
}
