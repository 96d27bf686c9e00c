//! The terminal record (SPEC §4): what an agent reports about itself, and its policy.

use herd_core::{
    AllowedVendors, Apply, Catalog, Consent, DailyWindow, Danger, Hardware, Installed,
    PackageFormat, Policy, Terminal, TzOffset, check_identifier, check_version,
};
use serde::{Deserialize, Serialize};

use crate::error::{Problems, ValidationError, json_path, parse_json};

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TerminalDoc {
    pub id: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub user: Option<String>,
    pub hardware: HardwareDoc,
    /// `null` for a terminal that runs no vaccine product yet.
    #[serde(default)]
    pub installed: Option<InstalledDoc>,
    pub policy: PolicyDoc,
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct HardwareDoc {
    pub kind: String,
    pub platform: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub model: Option<String>,
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct InstalledDoc {
    pub product: String,
    pub version: String,
    pub seq: u64,
    pub pattern: String,
    pub format: String,
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PolicyDoc {
    /// `latest-any-vendor`, `latest-same-vendor` or `pinned`.
    pub apply: String,
    /// Defaults to `low` (act on every threat).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub min_danger: Option<String>,
    /// `auto` (the default) or `ask`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub consent: Option<String>,
    /// `HH:MM-HH:MM` in the terminal's time zone, or null for "any time".
    #[serde(default)]
    pub window: Option<String>,
    /// The terminal's offset from UTC, like `+09:00`; defaults to UTC.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tz: Option<String>,
    /// The vendors whose products terminals may switch to; absent for any vendor. Vendors
    /// not (yet) in the catalog are allowed in the list and simply match nothing.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub vendors: Option<Vec<String>>,
}

/// One or many terminal records, as `herd plan --terminal` accepts them.
#[derive(Deserialize)]
#[serde(untagged)]
enum OneOrMany {
    Many(Vec<serde_json::Value>),
    One(serde_json::Value),
}

/// Parses a file holding one terminal record or a JSON array of them, and validates each
/// against `catalog`. One bad record does not spoil the others: each gets its own result,
/// named `document` (or `document[i]` for an array element).
pub fn parse_terminals(
    document: &str,
    text: &str,
    catalog: &Catalog,
) -> Result<Vec<Result<Terminal, ValidationError>>, ValidationError> {
    match parse_json::<OneOrMany>(document, text)? {
        OneOrMany::One(value) => Ok(vec![terminal_from_value(document, "$", value, catalog)]),
        OneOrMany::Many(values) => Ok(values
            .into_iter()
            .enumerate()
            .map(|(i, value)| terminal_from_value(document, &format!("$[{i}]"), value, catalog))
            .collect()),
    }
}

fn terminal_from_value(
    document: &str,
    root: &str,
    value: serde_json::Value,
    catalog: &Catalog,
) -> Result<Terminal, ValidationError> {
    let doc: TerminalDoc = serde_path_to_error::deserialize(value).map_err(|err| {
        let path = json_path(&err.path().to_string()).replacen('$', root, 1);
        ValidationError {
            document: document.to_string(),
            problems: vec![crate::Problem {
                path,
                message: err.into_inner().to_string(),
            }],
        }
    })?;
    doc.validate_at(document, root, catalog)
}

impl TerminalDoc {
    /// Validates the record against the catalog it will be planned with.
    pub fn validate(&self, document: &str, catalog: &Catalog) -> Result<Terminal, ValidationError> {
        self.validate_at(document, "$", catalog)
    }

    fn validate_at(
        &self,
        document: &str,
        root: &str,
        catalog: &Catalog,
    ) -> Result<Terminal, ValidationError> {
        let mut p = Problems::default();
        let at = |field: &str| format!("{root}.{field}");
        if self.id.is_empty() {
            p.add(at("id"), "a terminal id must not be empty");
        }
        if self.hardware.platform.is_empty() {
            p.add(at("hardware.platform"), "the platform must not be empty");
        }
        let installed = self.installed.as_ref().and_then(|inst| {
            let product = catalog.product_by_id(&inst.product);
            if product.is_none() {
                let why = check_identifier(&inst.product).err().unwrap_or_else(|| {
                    format!("unknown product {:?} (not in the catalog)", inst.product)
                });
                p.add(at("installed.product"), why);
            }
            p.check(|| at("installed.version"), check_version(&inst.version));
            let format = p.check(
                || at("installed.format"),
                PackageFormat::parse(&inst.format),
            );
            Some(Installed {
                product: product?,
                version: inst.version.clone(),
                seq: inst.seq,
                pattern: inst.pattern.clone(),
                format: format?,
            })
        });
        let pol = &self.policy;
        let apply = p.check(|| at("policy.apply"), Apply::parse(&pol.apply));
        let min_danger = p.check(
            || at("policy.min_danger"),
            pol.min_danger
                .as_deref()
                .map_or(Ok(Danger::Low), Danger::parse),
        );
        let consent = p.check(
            || at("policy.consent"),
            pol.consent
                .as_deref()
                .map_or(Ok(Consent::Auto), Consent::parse),
        );
        let window = p.check(
            || at("policy.window"),
            pol.window.as_deref().map(DailyWindow::parse).transpose(),
        );
        let tz = p.check(
            || at("policy.tz"),
            pol.tz.as_deref().map_or(Ok(TzOffset::UTC), TzOffset::parse),
        );
        let vendors = pol.vendors.as_ref().map(|ids| {
            for (i, id) in ids.iter().enumerate() {
                p.check(|| at(&format!("policy.vendors[{i}]")), check_identifier(id));
            }
            AllowedVendors::new(
                ids.iter()
                    .filter_map(|id| catalog.vendor_by_id(id))
                    .collect(),
            )
        });
        p.finish(document, || Terminal {
            id: self.id.clone(),
            user: self.user.clone(),
            hardware: Hardware {
                kind: self.hardware.kind.clone(),
                platform: self.hardware.platform.clone(),
                platform_idx: catalog.platform_by_name(&self.hardware.platform),
                model: self.hardware.model.clone(),
            },
            installed,
            group: None,
            policy: Policy {
                apply: apply.expect("checked"),
                min_danger: min_danger.expect("checked"),
                consent: consent.expect("checked"),
                window: window.expect("checked"),
                tz: tz.expect("checked"),
                vendors,
            },
        })
    }
}
