//! Resource quantities as the apiserver reads, adds and prints them (`resource.Quantity`):
//! exact values to nano precision, the format of the text they were read from (binary `Ki..Ei`,
//! decimal `n..E`, or an exponent), and the canonical text `String()` prints. The canonical text
//! is what the apiserver stores (a `1024Mi` limit reads back as `1Gi`) and what its messages quote
//! (`requested: limits.memory=1Gi, used: limits.memory=0`).

use std::cmp::Ordering;
use std::ops::{Add, Sub};

/// How a quantity prints.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Format {
    BinarySI,
    DecimalSI,
    DecimalExponent,
}

/// A quantity in nano-units (10^-9), with the format it prints in.
#[derive(Debug, Clone, Copy)]
pub struct Quantity {
    nanos: i128,
    pub format: Format,
}

const NANO: i128 = 1_000_000_000;

impl Quantity {
    pub fn zero() -> Self {
        Self {
            nanos: 0,
            format: Format::DecimalSI,
        }
    }

    pub fn from_units(units: i64) -> Self {
        Self {
            nanos: i128::from(units) * NANO,
            format: Format::DecimalSI,
        }
    }

    pub fn is_zero(&self) -> bool {
        self.nanos == 0
    }

    pub fn is_negative(&self) -> bool {
        self.nanos < 0
    }

    /// The value in whole units, rounded up (`Quantity.Value()`).
    pub fn value(&self) -> i128 {
        let whole = self.nanos.div_euclid(NANO);
        if self.nanos.rem_euclid(NANO) == 0 {
            whole
        } else {
            whole + 1
        }
    }

    /// The value in milli-units, rounded up (`Quantity.MilliValue()`).
    pub fn milli_value(&self) -> i128 {
        let milli = 1_000_000;
        let whole = self.nanos.div_euclid(milli);
        if self.nanos.rem_euclid(milli) == 0 {
            whole
        } else {
            whole + 1
        }
    }

    pub fn as_f64(&self) -> f64 {
        self.nanos as f64 / NANO as f64
    }

    /// Parses the text of a quantity (`128Mi`, `0.5Gi`, `100m`, `1e3`); `None` when it is not one.
    pub fn parse(text: &str) -> Option<Self> {
        let text = text.trim();
        if text.is_empty() {
            return None;
        }
        let (negative, rest) = match text.as_bytes()[0] {
            b'-' => (true, &text[1..]),
            b'+' => (false, &text[1..]),
            _ => (false, text),
        };
        let number_end = rest
            .find(|c: char| !(c.is_ascii_digit() || c == '.'))
            .unwrap_or(rest.len());
        let (number, suffix) = rest.split_at(number_end);
        if number.is_empty() || number == "." || number.matches('.').count() > 1 {
            return None;
        }
        let (whole, fraction) = number.split_once('.').unwrap_or((number, ""));
        // The number scaled to nano-units before the suffix is applied, rounding up beyond nano.
        let mut nanos: i128 = 0;
        for digit in whole.bytes() {
            nanos = nanos
                .checked_mul(10)?
                .checked_add(i128::from(digit - b'0'))?;
        }
        nanos = nanos.checked_mul(NANO)?;
        let mut scale = NANO / 10;
        let mut remainder = false;
        for digit in fraction.bytes() {
            if scale == 0 {
                remainder |= digit != b'0';
                continue;
            }
            nanos += i128::from(digit - b'0') * scale;
            scale /= 10;
        }
        let (format, multiplier, divisor) = match suffix {
            "" => (Format::DecimalSI, 1, 1),
            "n" => (Format::DecimalSI, 1, NANO),
            "u" => (Format::DecimalSI, 1, 1_000_000),
            "m" => (Format::DecimalSI, 1, 1_000),
            "k" => (Format::DecimalSI, 1_000, 1),
            "M" => (Format::DecimalSI, 1_000_000, 1),
            "G" => (Format::DecimalSI, 1_000_000_000, 1),
            "T" => (Format::DecimalSI, 1_000_000_000_000, 1),
            "P" => (Format::DecimalSI, 1_000_000_000_000_000, 1),
            "E" => (Format::DecimalSI, 1_000_000_000_000_000_000, 1),
            "Ki" => (Format::BinarySI, 1 << 10, 1),
            "Mi" => (Format::BinarySI, 1 << 20, 1),
            "Gi" => (Format::BinarySI, 1 << 30, 1),
            "Ti" => (Format::BinarySI, 1 << 40, 1),
            "Pi" => (Format::BinarySI, 1 << 50, 1),
            "Ei" => (Format::BinarySI, 1 << 60, 1),
            exponent if exponent.starts_with(['e', 'E']) => {
                let power: i32 = exponent[1..].parse().ok()?;
                if !(-9..=18).contains(&power) {
                    return None;
                }
                if power >= 0 {
                    (Format::DecimalExponent, 10i128.pow(power as u32), 1)
                } else {
                    (Format::DecimalExponent, 1, 10i128.pow((-power) as u32))
                }
            }
            _ => return None,
        };
        nanos = nanos.checked_mul(multiplier)?;
        if divisor > 1 {
            remainder |= nanos % divisor != 0;
            nanos /= divisor;
        }
        if remainder {
            nanos += 1;
        }
        Some(Self {
            nanos: if negative { -nanos } else { nanos },
            format,
        })
    }

    /// The canonical text (`Quantity.String()`).
    pub fn canonical(&self) -> String {
        if self.nanos == 0 {
            return "0".into();
        }
        let mut format = self.format;
        if format == Format::BinarySI && (self.nanos.abs() < 1024 * NANO || self.nanos % NANO != 0)
        {
            format = Format::DecimalSI;
        }
        match format {
            Format::BinarySI => {
                let mut value = self.nanos / NANO;
                let mut power = 0;
                while power < 6 && value % 1024 == 0 {
                    value /= 1024;
                    power += 1;
                }
                let suffix = ["", "Ki", "Mi", "Gi", "Ti", "Pi", "Ei"][power];
                format!("{value}{suffix}")
            }
            Format::DecimalSI | Format::DecimalExponent => {
                // mantissa × 10^exponent with the exponent a multiple of 3 (from -9).
                let mut mantissa = self.nanos;
                let mut exponent = -9;
                while exponent < 18 && mantissa % 1000 == 0 {
                    mantissa /= 1000;
                    exponent += 3;
                }
                if format == Format::DecimalExponent {
                    return if exponent == 0 {
                        format!("{mantissa}")
                    } else {
                        format!("{mantissa}e{exponent}")
                    };
                }
                let suffix = match exponent {
                    -9 => "n",
                    -6 => "u",
                    -3 => "m",
                    0 => "",
                    3 => "k",
                    6 => "M",
                    9 => "G",
                    12 => "T",
                    15 => "P",
                    _ => "E",
                };
                format!("{mantissa}{suffix}")
            }
        }
    }
}

impl std::fmt::Display for Quantity {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.canonical())
    }
}

impl PartialEq for Quantity {
    fn eq(&self, other: &Self) -> bool {
        self.nanos == other.nanos
    }
}

impl Eq for Quantity {}

impl PartialOrd for Quantity {
    fn partial_cmp(&self, other: &Self) -> Option<Ordering> {
        Some(self.cmp(other))
    }
}

impl Ord for Quantity {
    fn cmp(&self, other: &Self) -> Ordering {
        self.nanos.cmp(&other.nanos)
    }
}

/// Addition keeps the left operand's format, unless it is zero (`Quantity.Add`).
impl Add for Quantity {
    type Output = Self;
    fn add(self, other: Self) -> Self {
        Self {
            nanos: self.nanos + other.nanos,
            format: if self.is_zero() {
                other.format
            } else {
                self.format
            },
        }
    }
}

impl Sub for Quantity {
    type Output = Self;
    fn sub(self, other: Self) -> Self {
        Self {
            nanos: self.nanos - other.nanos,
            format: if self.is_zero() {
                other.format
            } else {
                self.format
            },
        }
    }
}

/// The canonical text of a quantity's text; the text itself when it is no quantity.
pub fn canonical_text(text: &str) -> String {
    Quantity::parse(text).map_or_else(|| text.to_string(), |q| q.canonical())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn c(text: &str) -> String {
        Quantity::parse(text).unwrap().canonical()
    }

    #[test]
    fn canonical_text_is_the_apiservers() {
        assert_eq!(c("1024Mi"), "1Gi");
        assert_eq!(c("0.5Gi"), "512Mi");
        assert_eq!(c("1.5Gi"), "1536Mi");
        assert_eq!(c("1000Mi"), "1000Mi");
        assert_eq!(c("1000M"), "1G");
        assert_eq!(c("1500M"), "1500M");
        assert_eq!(c("0.5"), "500m");
        assert_eq!(c("100m"), "100m");
        assert_eq!(c("1000m"), "1");
        assert_eq!(c("512"), "512");
        assert_eq!(c("2048"), "2048");
        assert_eq!(c("0"), "0");
        assert_eq!(c("0Mi"), "0");
        assert_eq!(c("1e3"), "1e3");
        let sum = Quantity::parse("256Mi").unwrap() + Quantity::parse("512Mi").unwrap();
        assert_eq!(sum.canonical(), "768Mi");
        let mixed = Quantity::parse("1Gi").unwrap() + Quantity::parse("100M").unwrap();
        assert_eq!(mixed.canonical(), "1173741824");
        assert!(Quantity::parse("12x").is_none());
        assert!(Quantity::parse("").is_none());
    }
}
