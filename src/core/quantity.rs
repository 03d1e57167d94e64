//! Kubernetes resource quantities (`4Gi`, `512Mi`, `1.5G`) as fix values.
//!
//! Parsing and comparison come from the `kube_quantity` crate; this module adds the rules a fix
//! value must obey (a positive number of bytes) and keeps the text the operator wrote, so a fix is
//! persisted exactly as it was given.

use std::cmp::Ordering;
use std::fmt;

use kube_quantity::ParsedQuantity;

/// Largest value accepted: 1 EiB. Anything larger is a typo, not a memory limit.
const MAX_BYTES: u128 = 1 << 60;

/// A validated, positive byte quantity that remembers how it was written.
#[derive(Debug, Clone)]
pub struct ByteQuantity {
    text: String,
    /// Exact decimal value: comparisons use it, so `4096Mi == 4Gi` and `1.5Gi > 1Gi` exactly.
    parsed: ParsedQuantity,
}

/// Why a quantity string is not a usable fix value.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum QuantityError {
    #[error("quantity {0:?} is not a Kubernetes quantity (expected e.g. 512Mi, 4Gi, 1G)")]
    Unparsable(String),
    #[error("quantity {0:?} must be greater than zero")]
    NotPositive(String),
    #[error("quantity {0:?} is larger than 1Ei")]
    TooLarge(String),
    #[error("quantity {0:?} is less than one byte")]
    FractionalBytes(String),
}

impl ByteQuantity {
    /// Parses `text` as a byte quantity. Leading and trailing blanks are ignored.
    pub fn parse(text: &str) -> Result<Self, QuantityError> {
        let text = text.trim();
        let parsed = ParsedQuantity::try_from(text)
            .map_err(|_| QuantityError::Unparsable(text.to_string()))?;
        // Bounds are checked on the f64 byte count, never with `ParsedQuantity`'s own comparison:
        // that one rescales both sides in `rust_decimal` and panics on overflow (`100000000000Ei`).
        // Within 1 byte ..= 1 EiB every rescaling fits, so comparing two `ByteQuantity`s is safe.
        let bytes = parsed
            .to_bytes_f64()
            .filter(|bytes| !bytes.is_nan())
            .ok_or_else(|| QuantityError::Unparsable(text.to_string()))?;
        if bytes <= 0.0 {
            return Err(QuantityError::NotPositive(text.to_string()));
        }
        if bytes > MAX_BYTES as f64 {
            return Err(QuantityError::TooLarge(text.to_string()));
        }
        if bytes < 1.0 {
            return Err(QuantityError::FractionalBytes(text.to_string()));
        }
        Ok(Self {
            text: text.to_string(),
            parsed,
        })
    }

    /// A whole number of bytes, written with the largest binary suffix that divides it
    /// (`805306368` → `768Mi`, `4294967296` → `4Gi`). More than 1 EiB is held to 1 EiB, the
    /// largest value [`ByteQuantity::parse`] accepts, so every `ByteQuantity` compares safely.
    pub fn from_bytes(bytes: u128) -> Self {
        let bytes = bytes.min(MAX_BYTES);
        const SUFFIXES: [(u128, &str); 4] = [
            (1 << 40, "Ti"),
            (1 << 30, "Gi"),
            (1 << 20, "Mi"),
            (1 << 10, "Ki"),
        ];
        let text = SUFFIXES
            .iter()
            .find(|(unit, _)| bytes >= *unit && bytes.is_multiple_of(*unit))
            .map_or_else(
                || bytes.to_string(),
                |(unit, suffix)| format!("{}{suffix}", bytes / unit),
            );
        Self {
            parsed: ParsedQuantity::try_from(text.as_str()).unwrap_or_default(),
            text,
        }
    }

    /// The quantity as the operator wrote it.
    pub fn as_str(&self) -> &str {
        &self.text
    }

    /// The quantity in bytes, rounded up to a whole byte as Kubernetes does.
    pub fn bytes(&self) -> u128 {
        self.parsed.to_bytes_f64().map_or(0, |b| b.ceil() as u128)
    }
}

impl PartialEq for ByteQuantity {
    fn eq(&self, other: &Self) -> bool {
        self.parsed == other.parsed
    }
}

impl Eq for ByteQuantity {}

impl PartialOrd for ByteQuantity {
    fn partial_cmp(&self, other: &Self) -> Option<Ordering> {
        Some(self.cmp(other))
    }
}

impl Ord for ByteQuantity {
    fn cmp(&self, other: &Self) -> Ordering {
        self.parsed.cmp(&other.parsed)
    }
}

impl fmt::Display for ByteQuantity {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.text)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn binary_and_decimal_suffixes_compare_by_bytes() {
        let gi = ByteQuantity::parse("4Gi").unwrap();
        let mi = ByteQuantity::parse("4096Mi").unwrap();
        let g = ByteQuantity::parse("4G").unwrap();
        assert_eq!(gi, mi);
        assert_eq!(gi.bytes(), 4 * 1024 * 1024 * 1024);
        assert!(g < gi);
        assert_eq!(mi.as_str(), "4096Mi");
    }

    #[test]
    fn plain_numbers_and_fractions_are_bytes() {
        assert_eq!(ByteQuantity::parse("1000").unwrap().bytes(), 1000);
        assert_eq!(
            ByteQuantity::parse("1.5Gi").unwrap().bytes(),
            1024 * 1024 * 1536
        );
        assert_eq!(ByteQuantity::parse(" 1Ki ").unwrap().as_str(), "1Ki");
    }

    #[test]
    fn from_bytes_uses_the_tidiest_suffix() {
        assert_eq!(ByteQuantity::from_bytes(805306368).as_str(), "768Mi");
        assert_eq!(ByteQuantity::from_bytes(4 << 30).as_str(), "4Gi");
        assert_eq!(ByteQuantity::from_bytes(1000).as_str(), "1000");
        assert_eq!(
            ByteQuantity::from_bytes(768 << 20),
            ByteQuantity::parse("768Mi").unwrap()
        );
    }

    #[test]
    fn rejects_garbage_zero_negative_and_huge() {
        assert!(matches!(
            ByteQuantity::parse("4Gx"),
            Err(QuantityError::Unparsable(_))
        ));
        assert!(matches!(
            ByteQuantity::parse(""),
            Err(QuantityError::Unparsable(_))
        ));
        assert!(matches!(
            ByteQuantity::parse("0"),
            Err(QuantityError::NotPositive(_))
        ));
        assert!(matches!(
            ByteQuantity::parse("-1Gi"),
            Err(QuantityError::NotPositive(_))
        ));
        assert!(matches!(
            ByteQuantity::parse("2048Pi"),
            Err(QuantityError::TooLarge(_))
        ));
        assert!(matches!(
            ByteQuantity::parse("1025Pi"),
            Err(QuantityError::TooLarge(_))
        ));
        let message = ByteQuantity::parse("lots").unwrap_err().to_string();
        assert!(message.contains("\"lots\""), "{message}");
    }

    #[test]
    fn values_whose_rescaling_overflows_are_too_large_not_a_panic() {
        // `kube_quantity` reads neither `1Ei` nor `1E` (its float parser takes the `E` for an
        // exponent), so the values that reach the overflow are written with an exponent.
        for text in [
            "1e11Ei",
            "1e11E",
            "8e10E",
            "1e20Ki",
            "-1e11Ei",
            "100000000000Ei",
        ] {
            let error = ByteQuantity::parse(text).unwrap_err();
            assert!(
                matches!(
                    error,
                    QuantityError::TooLarge(_)
                        | QuantityError::NotPositive(_)
                        | QuantityError::Unparsable(_)
                ),
                "{text}: {error}"
            );
            assert!(error.to_string().contains(text), "{error}");
        }
        assert!(matches!(
            ByteQuantity::parse("1e11Ei"),
            Err(QuantityError::TooLarge(_))
        ));
    }

    #[test]
    fn the_largest_values_still_compare() {
        let max = ByteQuantity::parse("1024Pi").unwrap();
        let smallest = ByteQuantity::parse("1000000000n").unwrap();
        assert!(smallest < max);
        assert_eq!(ByteQuantity::from_bytes(u128::MAX), max);
        assert!(ByteQuantity::from_bytes(u128::MAX) > smallest);
    }
}
