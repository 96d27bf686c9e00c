//! What the SQLite and PostgreSQL backends share: row decoding, integer range checks, error
//! mapping, and the JSON shapes in which batches (check-ins, events, rules) travel to the
//! database as one parameter, so a batch costs a few statements instead of a few per row.

use std::collections::{BTreeMap, HashMap, HashSet};

use sqlx::{ColumnIndex, Decode, Row, Type};

use crate::{
    AddressRow, ApiTokenRow, Approval, CaMaterial, CheckinWrite, EnrolTokenRow, EventRow, GroupRow,
    OnlineKeyRow, OnlineKeyState, PackageContent, PackageRow, Role, RuleRow, StoreError,
    StoredFeed, TerminalRow, ThreatOwnerRow, TufDocument, VendorApprovalRow, VendorKeyRow,
    VendorRoleRow,
};

/// The columns [`terminal_from_row`] reads, in the order both schemas declare them.
macro_rules! terminal_columns {
    () => {
        "id, group_id, last_checkin, last_address, agent_version, plan_id, plan_action, \
         plan_uncovered, planned_at, enrolled_at, cert_sha256, user_name, tz, hardware, \
         installed, plan, last_report"
    };
}
pub(crate) use terminal_columns;

/// A `u64` of the API as the `BIGINT`/`INTEGER` both databases store (at most `i64::MAX`).
pub(crate) fn to_db_int(value: u64, what: &str) -> Result<i64, StoreError> {
    i64::try_from(value).map_err(|_| {
        StoreError::Db(sqlx::Error::Encode(
            format!("{what} {value} is larger than the database can store (2^63 - 1)").into(),
        ))
    })
}

/// A stored integer that the API declares unsigned; a negative one was not written by us.
pub(crate) fn from_db_int(value: i64, what: &str) -> Result<u64, StoreError> {
    u64::try_from(value).map_err(|_| StoreError::Corrupt(format!("{what} is negative ({value})")))
}

/// Turns a unique-key violation into `Conflict` with `what` as the message; other errors pass.
pub(crate) fn conflict_on_unique(error: sqlx::Error, what: impl FnOnce() -> String) -> StoreError {
    match error.as_database_error() {
        Some(db) if db.is_unique_violation() => StoreError::Conflict(what()),
        _ => StoreError::Db(error),
    }
}

/// Decodes the columns of [`terminal_columns!`].
pub(crate) fn terminal_from_row<R>(row: &R) -> Result<TerminalRow, StoreError>
where
    R: Row,
    &'static str: ColumnIndex<R>,
    for<'r> String: Decode<'r, R::Database> + Type<R::Database>,
    for<'r> Option<String>: Decode<'r, R::Database> + Type<R::Database>,
    for<'r> i64: Decode<'r, R::Database> + Type<R::Database>,
    for<'r> Option<i64>: Decode<'r, R::Database> + Type<R::Database>,
{
    let id: String = row.try_get("id")?;
    let plan_uncovered: i64 = row.try_get("plan_uncovered")?;
    Ok(TerminalRow {
        plan_uncovered: from_db_int(plan_uncovered, &format!("terminal {id:?}: plan_uncovered"))?,
        user: row.try_get("user_name")?,
        hardware: row.try_get("hardware")?,
        tz: row.try_get("tz")?,
        group: row.try_get("group_id")?,
        cert_sha256: row.try_get("cert_sha256")?,
        enrolled_at: row.try_get("enrolled_at")?,
        last_checkin: row.try_get("last_checkin")?,
        last_address: row.try_get("last_address")?,
        installed: row.try_get("installed")?,
        agent_version: row.try_get("agent_version")?,
        plan_id: row.try_get("plan_id")?,
        plan_action: row.try_get("plan_action")?,
        plan: row.try_get("plan")?,
        planned_at: row.try_get("planned_at")?,
        last_report: row.try_get("last_report")?,
        id,
    })
}

/// Implements one `*_from_row` per row type, generic over the backend's row like
/// [`terminal_from_row`].
macro_rules! generic_row_decoder {
    ($(#[$doc:meta])* fn $name:ident($row:ident) -> $out:ty $body:block) => {
        $(#[$doc])*
        pub(crate) fn $name<R>($row: &R) -> Result<$out, StoreError>
        where
            R: Row,
            &'static str: ColumnIndex<R>,
            for<'r> String: Decode<'r, R::Database> + Type<R::Database>,
            for<'r> Option<String>: Decode<'r, R::Database> + Type<R::Database>,
            for<'r> i64: Decode<'r, R::Database> + Type<R::Database>,
        $body
    };
}

generic_row_decoder! {
    /// Columns `cert_pem, key_pem, trust_pem, generation` of `ca`.
    fn ca_material(row) -> CaMaterial {
        Ok(CaMaterial {
            cert_pem: row.try_get("cert_pem")?,
            key_pem: row.try_get("key_pem")?,
            trust_pem: row.try_get("trust_pem")?,
            generation: from_db_int(row.try_get("generation")?, "CA generation")?,
        })
    }
}

generic_row_decoder! {
    /// Columns `role, version, expires_at, doc` of `tuf_metadata`.
    fn tuf_document_from_row(row) -> TufDocument {
        let role: String = row.try_get("role")?;
        Ok(TufDocument {
            version: from_db_int(row.try_get("version")?, &format!("TUF role {role}'s version"))?,
            expires_at: row.try_get("expires_at")?,
            doc: row.try_get("doc")?,
            role,
        })
    }
}

generic_row_decoder! {
    /// Columns `keyid, role, public, sealed, state, created_at` of `tuf_online_keys`.
    fn online_key_from_row(row) -> OnlineKeyRow {
        let keyid: String = row.try_get("keyid")?;
        let state: String = row.try_get("state")?;
        Ok(OnlineKeyRow {
            state: OnlineKeyState::parse(&state).ok_or_else(|| {
                StoreError::Corrupt(format!("online key {keyid}: state {state:?}"))
            })?,
            role: row.try_get("role")?,
            public: row.try_get("public")?,
            sealed: row.try_get("sealed")?,
            created_at: row.try_get("created_at")?,
            keyid,
        })
    }
}

generic_row_decoder! {
    /// Columns `vendor, keyid, public, registered_at` of `tuf_vendor_keys`.
    fn vendor_key_from_row(row) -> VendorKeyRow {
        Ok(VendorKeyRow {
            vendor: row.try_get("vendor")?,
            keyid: row.try_get("keyid")?,
            public: row.try_get("public")?,
            registered_at: row.try_get("registered_at")?,
        })
    }
}

generic_row_decoder! {
    /// Columns `vendor, version, doc, uploaded_at` of `tuf_vendor_roles`.
    fn vendor_role_from_row(row) -> VendorRoleRow {
        let vendor: String = row.try_get("vendor")?;
        Ok(VendorRoleRow {
            version: from_db_int(row.try_get("version")?, &format!("vendor {vendor}'s role version"))?,
            doc: row.try_get("doc")?,
            uploaded_at: row.try_get("uploaded_at")?,
            vendor,
        })
    }
}

generic_row_decoder! {
    /// Columns `sha256, content_sha256, content_length` of `packages` (both set).
    fn package_content_from_row(row) -> PackageContent {
        let sha256: String = row.try_get("sha256")?;
        Ok(PackageContent {
            content_sha256: row.try_get("content_sha256")?,
            content_length: from_db_int(
                row.try_get("content_length")?,
                &format!("package {sha256}'s content length"),
            )?,
            sha256,
        })
    }
}

generic_row_decoder! {
    /// Columns `vendor, doc, sha256, published_at` of `feeds`.
    fn feed_from_row(row) -> StoredFeed {
        Ok(StoredFeed {
            vendor: row.try_get("vendor")?,
            doc: row.try_get("doc")?,
            sha256: row.try_get("sha256")?,
            published_at: row.try_get("published_at")?,
        })
    }
}

fn approval_of(text: &str, what: &str) -> Result<Approval, StoreError> {
    Approval::parse(text).ok_or_else(|| StoreError::Corrupt(format!("{what}: status {text:?}")))
}

generic_row_decoder! {
    /// Columns `threat, vendor, status, declared_at` of `threat_owners`.
    fn threat_owner_from_row(row) -> ThreatOwnerRow {
        let threat: String = row.try_get("threat")?;
        let status: String = row.try_get("status")?;
        Ok(ThreatOwnerRow {
            status: approval_of(&status, &format!("threat {threat:?}"))?,
            vendor: row.try_get("vendor")?,
            declared_at: row.try_get("declared_at")?,
            threat,
        })
    }
}

generic_row_decoder! {
    /// Columns `vendor, status, first_published_at` of `vendor_approvals`.
    fn vendor_approval_from_row(row) -> VendorApprovalRow {
        let vendor: String = row.try_get("vendor")?;
        let status: String = row.try_get("status")?;
        Ok(VendorApprovalRow {
            status: approval_of(&status, &format!("vendor {vendor:?}"))?,
            first_published_at: row.try_get("first_published_at")?,
            vendor,
        })
    }
}

generic_row_decoder! {
    /// Columns `sha256, size, vendor, uploaded_at` of `packages`.
    fn package_from_row(row) -> PackageRow {
        let sha256: String = row.try_get("sha256")?;
        let size: i64 = row.try_get("size")?;
        Ok(PackageRow {
            size: from_db_int(size, &format!("package {sha256}: size"))?,
            vendor: row.try_get("vendor")?,
            uploaded_at: row.try_get("uploaded_at")?,
            sha256,
        })
    }
}

/// The columns [`enrol_token_from_row`] reads.
pub(crate) const ENROL_TOKEN_COLUMNS: &str =
    "hash, label, uses_left, created_at, expires_at, reenrol_terminal";

generic_row_decoder! {
    /// [`ENROL_TOKEN_COLUMNS`] of `enrol_tokens`.
    fn enrol_token_from_row(row) -> EnrolTokenRow {
        Ok(EnrolTokenRow {
            hash: row.try_get("hash")?,
            label: row.try_get("label")?,
            uses_left: from_db_int(row.try_get("uses_left")?, "enrolment token uses")?,
            created_at: row.try_get("created_at")?,
            expires_at: row.try_get("expires_at")?,
            reenrol_terminal: row.try_get("reenrol_terminal")?,
        })
    }
}

generic_row_decoder! {
    /// Columns `hash, role, vendor, label, created_at, expires_at` of `api_tokens`.
    fn api_token_from_row(row) -> ApiTokenRow {
        let hash: String = row.try_get("hash")?;
        let role: String = row.try_get("role")?;
        let role = match role.as_str() {
            "operator" => Role::Operator,
            "vendor" => Role::Vendor,
            "viewer" => Role::Viewer,
            "analyst" => Role::Analyst,
            other => {
                return Err(StoreError::Corrupt(format!("API token {hash}: unknown role {other:?}")))
            }
        };
        Ok(ApiTokenRow {
            role,
            vendor: row.try_get("vendor")?,
            label: row.try_get("label")?,
            created_at: row.try_get("created_at")?,
            expires_at: row.try_get("expires_at")?,
            hash,
        })
    }
}

generic_row_decoder! {
    /// Columns `address, first_seen, last_seen, checkins` of `terminal_addresses`.
    fn address_from_row(row) -> AddressRow {
        let address: String = row.try_get("address")?;
        let checkins: i64 = row.try_get("checkins")?;
        Ok(AddressRow {
            checkins: from_db_int(checkins, &format!("address {address}: checkins"))?,
            first_seen: row.try_get("first_seen")?,
            last_seen: row.try_get("last_seen")?,
            address,
        })
    }
}

generic_row_decoder! {
    /// Columns `id, description, policy` of `groups`.
    fn group_from_row(row) -> GroupRow {
        Ok(GroupRow {
            id: row.try_get("id")?,
            description: row.try_get("description")?,
            policy: row.try_get("policy")?,
        })
    }
}

generic_row_decoder! {
    /// Columns `id, description, policy` of `groups` and the terminal count as `terminals`.
    fn group_with_count_from_row(row) -> (GroupRow, u64) {
        let group = group_from_row(row)?;
        let terminals: i64 = row.try_get("terminals")?;
        let terminals = from_db_int(terminals, &format!("group {}: terminal count", group.id))?;
        Ok((group, terminals))
    }
}

generic_row_decoder! {
    /// Columns `group_id, rule` of `rules`.
    fn rule_from_row(row) -> RuleRow {
        Ok(RuleRow { group: row.try_get("group_id")?, rule: row.try_get("rule")? })
    }
}

generic_row_decoder! {
    /// Columns `terminal, seq, at, kind, data, received_at` of `events`.
    fn event_from_row(row) -> EventRow {
        let terminal: String = row.try_get("terminal")?;
        let seq: i64 = row.try_get("seq")?;
        Ok(EventRow {
            seq: from_db_int(seq, &format!("event of terminal {terminal}: seq"))?,
            at: row.try_get("at")?,
            kind: row.try_get("kind")?,
            data: row.try_get("data")?,
            received_at: row.try_get("received_at")?,
            terminal,
        })
    }
}

/// A listing limit: 0 means no limit.
pub(crate) fn limit_or_all(limit: u32) -> i64 {
    if limit == 0 {
        i64::MAX
    } else {
        i64::from(limit)
    }
}

/// The event kind whose data becomes the terminal's `last_report`. The dialects'
/// `UPDATE_LAST_REPORT` and the migrations' partial index spell it as an SQL literal (a
/// partial index is used only for a query naming the same literal, and migrations are never
/// edited); `tests::sql_names_the_plan_report_kind` holds them to this name.
pub(crate) use herd_proto::api::events::PLAN_REPORT;

/// A check-in batch reduced to what one statement per kind of change needs. Terminals appearing
/// twice keep their later write; addresses are aggregated per (terminal, address), because one
/// statement may change a row only once (PostgreSQL refuses otherwise, and SQLite's
/// `UPDATE … FROM` would pick an arbitrary match). Everything is sorted by terminal id, so
/// concurrent batches lock rows in the same order. Each backend turns it into the JSON
/// parameters of its statements.
#[derive(Debug)]
pub(crate) struct CheckinBatch<'a> {
    /// The write that counts for each terminal, sorted by terminal id.
    pub latest: Vec<&'a CheckinWrite>,
    /// Per (terminal, address): first seen, last seen and the number of check-ins.
    pub addresses: BTreeMap<(&'a str, &'a str), AddressStats>,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct AddressStats {
    pub first: i64,
    pub last: i64,
    pub checkins: i64,
}

impl<'a> CheckinBatch<'a> {
    pub fn new(batch: &'a [CheckinWrite]) -> Self {
        let mut last_write: HashMap<&str, usize> = HashMap::with_capacity(batch.len());
        let mut addresses: BTreeMap<(&str, &str), AddressStats> = BTreeMap::new();
        for (index, write) in batch.iter().enumerate() {
            last_write.insert(&write.terminal, index);
            addresses
                .entry((&write.terminal, &write.address))
                .and_modify(|stats| {
                    stats.first = stats.first.min(write.at);
                    stats.last = stats.last.max(write.at);
                    stats.checkins += 1;
                })
                .or_insert(AddressStats {
                    first: write.at,
                    last: write.at,
                    checkins: 1,
                });
        }
        let mut latest: Vec<&CheckinWrite> = last_write.into_values().map(|i| &batch[i]).collect();
        latest.sort_unstable_by(|a, b| a.terminal.cmp(&b.terminal));
        Self { latest, addresses }
    }

    /// The distinct terminal ids, sorted, as a JSON array of strings.
    pub fn terminals_json(&self) -> Result<String, StoreError> {
        let terminals: Vec<&str> = self.latest.iter().map(|w| w.terminal.as_str()).collect();
        to_json(&terminals)
    }

    /// `[terminal, address, first_seen, last_seen, checkins]` per (terminal, address).
    pub fn addresses_json(&self) -> Result<String, StoreError> {
        let rows: Vec<(&str, &str, i64, i64, i64)> = self
            .addresses
            .iter()
            .map(|(&(terminal, address), s)| (terminal, address, s.first, s.last, s.checkins))
            .collect();
        to_json(&rows)
    }

    /// `[terminal, plan_id, action, uncovered, doc, at]` for the terminals `changed` names,
    /// or `None` if it names none of the batch. Plan documents are the bulk of a batch, and
    /// most check-ins do not change the plan: only those that do send theirs.
    pub fn plans_json(&self, changed: &HashSet<&str>) -> Result<Option<String>, StoreError> {
        let plans = self
            .latest
            .iter()
            .filter(|w| changed.contains(w.terminal.as_str()))
            .map(|w| {
                let uncovered = to_db_int(w.plan.uncovered, "plan uncovered count")?;
                Ok((
                    w.terminal.as_str(),
                    w.plan.id.as_str(),
                    w.plan.action.as_str(),
                    uncovered,
                    w.plan.doc.as_str(),
                    w.at,
                ))
            })
            .collect::<Result<Vec<_>, StoreError>>()?;
        if plans.is_empty() {
            Ok(None)
        } else {
            to_json(&plans).map(Some)
        }
    }
}

/// Checks that a batch of events is one terminal's (a store appends a terminal's batch as a
/// whole) and that its seqs fit the database's integers.
pub(crate) fn events_of_one_terminal(events: &[EventRow]) -> Result<(), StoreError> {
    let Some(first) = events.first() else {
        return Ok(());
    };
    for event in events {
        if event.terminal != first.terminal {
            return Err(StoreError::Conflict(format!(
                "events of several terminals in one append ({:?} and {:?})",
                first.terminal, event.terminal
            )));
        }
        to_db_int(event.seq, "event seq")?;
    }
    Ok(())
}

/// Placement rules as `[position, group, rule]` arrays.
pub(crate) fn rules_json(rules: &[RuleRow]) -> Result<String, StoreError> {
    let rows: Vec<(usize, &str, &str)> = rules
        .iter()
        .enumerate()
        .map(|(position, rule)| (position, rule.group.as_str(), rule.rule.as_str()))
        .collect();
    to_json(&rows)
}

pub(crate) fn to_json<T: serde::Serialize + ?Sized>(value: &T) -> Result<String, StoreError> {
    serde_json::to_string(value).map_err(|error| StoreError::Db(sqlx::Error::Encode(error.into())))
}

/// Ids as `[[id], …]`: the rows a dialect's `json_rows` gives, each id read as `r.value ->> 0`.
pub(crate) fn ids_json(ids: &[&str]) -> Result<String, StoreError> {
    to_json(&ids.iter().map(|id| [*id]).collect::<Vec<_>>())
}

#[cfg(test)]
mod tests {
    use super::PLAN_REPORT;
    use crate::sql::Dialect;

    #[test]
    fn sql_names_the_plan_report_kind() {
        let literal = format!("kind = '{PLAN_REPORT}'");
        for (name, sql) in [
            (
                "SQLite's UPDATE_LAST_REPORT",
                sqlx::Sqlite::UPDATE_LAST_REPORT,
            ),
            (
                "PostgreSQL's UPDATE_LAST_REPORT",
                sqlx::Postgres::UPDATE_LAST_REPORT,
            ),
            (
                "the SQLite schema",
                include_str!("../migrations/sqlite/0001_schema.sql"),
            ),
            (
                "the PostgreSQL schema",
                include_str!("../migrations/postgres/0001_schema.sql"),
            ),
        ] {
            assert!(sql.contains(&literal), "{name} does not say {literal}");
        }
    }
}
