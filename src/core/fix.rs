//! The fix model: one learned repair, such as "give container `app` of workload `gitlab/webservice`
//! 4Gi of memory", and the rule that merges a new observation into what is already known.
//!
//! Everything here is pure: no I/O, no clock. The persisted text form lives in `document.rs`.

use std::fmt;

use jiff::Timestamp;
use serde::{Deserialize, Serialize};

use crate::core::quantity::{ByteQuantity, QuantityError};

/// What a fix changes. New kinds are added here and taught to `webhook::mutate`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum FixType {
    /// Container memory limit (and request, where it equalled the limit).
    Memory,
    /// Storage request of a PersistentVolumeClaim or a StatefulSet volume claim template.
    Storage,
}

impl FixType {
    pub const ALL: [FixType; 2] = [FixType::Memory, FixType::Storage];

    pub fn as_str(self) -> &'static str {
        match self {
            FixType::Memory => "memory",
            FixType::Storage => "storage",
        }
    }

    /// The type named `text` (`memory`, `storage`).
    pub fn parse(text: &str) -> Result<Self, FixError> {
        Self::ALL
            .into_iter()
            .find(|t| t.as_str() == text)
            .ok_or_else(|| FixError::UnknownType(text.to_string()))
    }
}

impl fmt::Display for FixType {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// One persisted fix.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Fix {
    /// Namespace of the workload or claim.
    pub namespace: String,
    /// Name of the workload (Deployment, StatefulSet, ...) or PersistentVolumeClaim.
    pub resource: String,
    pub fix_type: FixType,
    /// The value to raise to: never lowered by merging.
    pub value: ByteQuantity,
    /// When the fix was last raised.
    pub timestamp: Option<Timestamp>,
    /// Memory fixes: only this container (otherwise every container of the workload).
    pub container: Option<String>,
    /// Storage fixes on a StatefulSet: only this volume claim template.
    pub claim: Option<String>,
    /// Why the fix was made, for people reading `kubectl describe configmap fixes`.
    pub reason: Option<String>,
    /// What was observed: a log line, an event message.
    pub evidence: Option<String>,
    /// The value before the last raise.
    pub previous: Option<String>,
    /// How many times this fix was recorded with a larger value (1 for a new fix).
    pub count: u32,
}

/// Identity of a fix: two fixes with the same key are the same fix at different values.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct FixKey {
    pub namespace: String,
    pub resource: String,
    pub fix_type: FixType,
    pub target: Option<String>,
}

/// What recording a fix did to the set of known fixes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum MergeOutcome {
    /// No fix with this key existed.
    Added,
    /// The stored value was smaller and was raised.
    Raised { from: String },
    /// The stored value was already at least as large: nothing changed.
    Unchanged,
}

impl MergeOutcome {
    pub fn changed(&self) -> bool {
        !matches!(self, MergeOutcome::Unchanged)
    }
}

/// Why an entry is not a valid fix. The message names the field and the bad value.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum FixError {
    #[error("missing required field `{0}`")]
    MissingField(&'static str),
    #[error("unknown fix type {0:?} (known: memory, storage)")]
    UnknownType(String),
    #[error("field `value`: {0}")]
    Value(#[from] QuantityError),
    #[error("field `{field}`: {value:?} is not a valid Kubernetes name")]
    BadName { field: &'static str, value: String },
    #[error("field `timestamp`: {0:?} is not an RFC 3339 time such as 2026-01-15T10:30:00Z")]
    BadTimestamp(String),
    #[error("field `{field}` does not apply to {fix_type} fixes")]
    FieldNotApplicable {
        field: &'static str,
        fix_type: FixType,
    },
}

impl Fix {
    /// Builds a fix from the fields of a persisted entry, checking each one.
    pub fn from_record(record: FixRecord) -> Result<Self, FixError> {
        let namespace = required("namespace", record.namespace)?;
        let resource = required("resource", record.resource)?;
        let fix_type = FixType::parse(&required("type", record.fix_type)?)?;
        let value = ByteQuantity::parse(&required("value", record.value)?)?;
        check_name("namespace", &namespace, 63)?;
        check_name("resource", &resource, 253)?;
        let timestamp = record
            .timestamp
            .map(|t| {
                t.parse::<Timestamp>()
                    .map_err(|_| FixError::BadTimestamp(t))
            })
            .transpose()?;
        if let Some(container) = &record.container {
            check_name("container", container, 63)?;
            if fix_type != FixType::Memory {
                return Err(FixError::FieldNotApplicable {
                    field: "container",
                    fix_type,
                });
            }
        }
        if let Some(claim) = &record.claim {
            check_name("claim", claim, 253)?;
            if fix_type != FixType::Storage {
                return Err(FixError::FieldNotApplicable {
                    field: "claim",
                    fix_type,
                });
            }
        }
        Ok(Fix {
            namespace,
            resource,
            fix_type,
            value,
            timestamp,
            container: record.container,
            claim: record.claim,
            reason: record.reason,
            evidence: record.evidence,
            previous: record.previous,
            count: record.count.unwrap_or(1).max(1),
        })
    }

    /// The persisted form of this fix.
    pub fn to_record(&self) -> FixRecord {
        FixRecord {
            namespace: Some(self.namespace.clone()),
            resource: Some(self.resource.clone()),
            fix_type: Some(self.fix_type.as_str().to_string()),
            value: Some(self.value.as_str().to_string()),
            timestamp: self.timestamp.map(|t| t.to_string()),
            container: self.container.clone(),
            claim: self.claim.clone(),
            reason: self.reason.clone(),
            evidence: self.evidence.clone(),
            previous: self.previous.clone(),
            count: Some(self.count),
        }
    }

    pub fn key(&self) -> FixKey {
        FixKey {
            namespace: self.namespace.clone(),
            resource: self.resource.clone(),
            fix_type: self.fix_type,
            target: self.target().map(str::to_string),
        }
    }

    /// The container (memory) or claim template (storage) this fix is limited to, if any.
    pub fn target(&self) -> Option<&str> {
        match self.fix_type {
            FixType::Memory => self.container.as_deref(),
            FixType::Storage => self.claim.as_deref(),
        }
    }

    /// Merges `incoming` (same key) into `self`: a larger value replaces a smaller one, and
    /// nothing else ever changes, so recording the same fix twice is a no-op.
    pub fn merge(&mut self, incoming: Fix) -> MergeOutcome {
        debug_assert_eq!(self.key(), incoming.key());
        if incoming.value <= self.value {
            return MergeOutcome::Unchanged;
        }
        let from = self.value.as_str().to_string();
        self.previous = Some(from.clone());
        self.value = incoming.value;
        self.timestamp = incoming.timestamp.or(self.timestamp);
        self.reason = incoming.reason.or(self.reason.take());
        self.evidence = incoming.evidence.or(self.evidence.take());
        self.count = self.count.saturating_add(1);
        MergeOutcome::Raised { from }
    }
}

/// The fields of one entry of `fixes.yaml`, exactly as written. All optional here so that one
/// entry with a missing field is reported by name instead of failing the whole document.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FixRecord {
    #[serde(skip_serializing_if = "Option::is_none")]
    pub namespace: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub resource: Option<String>,
    #[serde(rename = "type", skip_serializing_if = "Option::is_none")]
    pub fix_type: Option<String>,
    /// A quantity: `4Gi`, or a plain number of bytes (YAML may write it unquoted).
    #[serde(
        default,
        skip_serializing_if = "Option::is_none",
        deserialize_with = "string_or_number"
    )]
    pub value: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub timestamp: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub container: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub claim: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub reason: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub evidence: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub previous: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub count: Option<u32>,
}

fn string_or_number<'de, D>(deserializer: D) -> Result<Option<String>, D::Error>
where
    D: serde::Deserializer<'de>,
{
    #[derive(Deserialize)]
    #[serde(untagged)]
    enum Scalar {
        Text(String),
        Whole(u64),
        Float(f64),
    }
    Ok(
        Option::<Scalar>::deserialize(deserializer)?.map(|scalar| match scalar {
            Scalar::Text(text) => text,
            Scalar::Whole(number) => number.to_string(),
            Scalar::Float(number) => number.to_string(),
        }),
    )
}

fn required(field: &'static str, value: Option<String>) -> Result<String, FixError> {
    match value {
        Some(v) if !v.trim().is_empty() => Ok(v.trim().to_string()),
        _ => Err(FixError::MissingField(field)),
    }
}

/// Kubernetes object names: lowercase alphanumerics, `-` and `.`, starting and ending with an
/// alphanumeric, at most `max_len` characters.
fn check_name(field: &'static str, value: &str, max_len: usize) -> Result<(), FixError> {
    let alnum = |c: char| c.is_ascii_lowercase() || c.is_ascii_digit();
    let valid = !value.is_empty()
        && value.len() <= max_len
        && value.chars().all(|c| alnum(c) || c == '-' || c == '.')
        && value.starts_with(alnum)
        && value.ends_with(alnum);
    if valid {
        Ok(())
    } else {
        Err(FixError::BadName {
            field,
            value: value.to_string(),
        })
    }
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;

    pub(crate) fn memory_fix(namespace: &str, resource: &str, value: &str) -> Fix {
        Fix::from_record(FixRecord {
            namespace: Some(namespace.into()),
            resource: Some(resource.into()),
            fix_type: Some("memory".into()),
            value: Some(value.into()),
            timestamp: Some("2026-01-15T10:30:00Z".into()),
            ..FixRecord::default()
        })
        .unwrap()
    }

    #[test]
    fn record_round_trips() {
        let fix = memory_fix("gitlab", "gitlab-webservice", "4Gi");
        assert_eq!(Fix::from_record(fix.to_record()).unwrap(), fix);
        assert_eq!(fix.count, 1);
        assert_eq!(fix.timestamp.unwrap().to_string(), "2026-01-15T10:30:00Z");
    }

    #[test]
    fn merge_raises_never_lowers_and_is_idempotent() {
        let mut stored = memory_fix("ns", "app", "2Gi");
        assert_eq!(
            stored.merge(memory_fix("ns", "app", "4Gi")),
            MergeOutcome::Raised { from: "2Gi".into() }
        );
        assert_eq!(stored.value.as_str(), "4Gi");
        assert_eq!(stored.previous.as_deref(), Some("2Gi"));
        assert_eq!(stored.count, 2);
        let before = stored.clone();
        assert_eq!(
            stored.merge(memory_fix("ns", "app", "4096Mi")),
            MergeOutcome::Unchanged
        );
        assert_eq!(
            stored.merge(memory_fix("ns", "app", "1Gi")),
            MergeOutcome::Unchanged
        );
        assert_eq!(stored, before);
    }

    #[test]
    fn unquoted_numbers_are_byte_values() {
        let record: FixRecord =
            serde_norway::from_str("{namespace: a, resource: b, type: storage, value: 1073741824}")
                .unwrap();
        assert_eq!(Fix::from_record(record).unwrap().value.bytes(), 1 << 30);
    }

    #[test]
    fn container_limits_the_key() {
        let mut record = memory_fix("ns", "app", "1Gi").to_record();
        record.container = Some("sidecar".into());
        let narrowed = Fix::from_record(record).unwrap();
        assert_ne!(narrowed.key(), memory_fix("ns", "app", "1Gi").key());
        assert_eq!(narrowed.target(), Some("sidecar"));
    }

    #[test]
    fn each_bad_field_is_named() {
        let good = memory_fix("ns", "app", "1Gi").to_record();
        let cases: Vec<(FixRecord, &str)> = vec![
            (
                FixRecord {
                    namespace: None,
                    ..good.clone()
                },
                "`namespace`",
            ),
            (
                FixRecord {
                    fix_type: Some("cpu".into()),
                    ..good.clone()
                },
                "\"cpu\"",
            ),
            (
                FixRecord {
                    value: Some("4Gx".into()),
                    ..good.clone()
                },
                "\"4Gx\"",
            ),
            (
                FixRecord {
                    resource: Some("Bad_Name".into()),
                    ..good.clone()
                },
                "`resource`",
            ),
            (
                FixRecord {
                    timestamp: Some("yesterday".into()),
                    ..good.clone()
                },
                "\"yesterday\"",
            ),
            (
                FixRecord {
                    claim: Some("data".into()),
                    ..good.clone()
                },
                "`claim`",
            ),
        ];
        for (record, expected) in cases {
            let message = Fix::from_record(record).unwrap_err().to_string();
            assert!(
                message.contains(expected),
                "{message:?} should name {expected}"
            );
        }
    }
}
