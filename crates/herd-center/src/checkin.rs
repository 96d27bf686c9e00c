//! Check-ins: the hot path. A check-in validates the reported inventory against the catalog,
//! plans with this thread's planner, and hands one write to the group-commit writer, which
//! stores whatever check-ins arrived meanwhile in one transaction and then answers them all —
//! so every answered check-in is stored, and the store sees one transaction per batch instead
//! of one per terminal.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::sync::atomic::Ordering::Relaxed;
use std::time::Instant;

use herd_core::Timestamp;
#[cfg(test)]
use herd_proto::api::CheckinResponse;
use herd_proto::api::{
    CheckinRequest, MAX_CHECKIN_METADATA_BYTES, MAX_INTERFACE_ADDRESSES, MAX_INTERFACES,
    MAX_TUF_HELD, NetworkInterface,
};
use herd_proto::terminal::{PolicyDoc, TerminalDoc};
use herd_store::{CheckinWrite, InterfaceSeen, PlanWrite, QueueItem, Store};
use rand::Rng as _;
use sha2::{Digest as _, Sha256};

use crate::error::{CenterError, CenterResult, ErrorKind};
use crate::group_commit::{Closed, GroupCommit};
use crate::metrics::Metrics;
use crate::{Center, KnownTerminal, planners, rfc3339};

/// The most check-ins one transaction stores.
const MAX_BATCH: usize = 1024;

/// The group-commit writer of check-ins.
#[derive(Debug)]
pub struct CheckinWriter(GroupCommit<CheckinWrite, Result<(), String>>);

impl CheckinWriter {
    pub fn start(store: Arc<dyn Store>, metrics: Arc<Metrics>) -> CheckinWriter {
        CheckinWriter(GroupCommit::start(
            MAX_BATCH,
            Box::new(move |writes: Vec<CheckinWrite>| {
                let (store, metrics) = (store.clone(), metrics.clone());
                Box::pin(async move {
                    metrics.checkin_batch_size.observe(writes.len() as f64);
                    let result = store.record_checkins(&writes).await.map_err(|err| {
                        tracing::error!(%err, batch = writes.len(), "storing check-ins failed");
                        err.to_string()
                    });
                    vec![result; writes.len()]
                })
            }),
        ))
    }

    /// Stores one check-in (with whatever else is waiting) and returns once it is committed.
    pub async fn write(&self, write: CheckinWrite) -> CenterResult<()> {
        match self.0.write(write).await {
            Ok(Ok(())) => Ok(()),
            Ok(Err(message)) => Err(unavailable(&message)),
            Err(Closed::ShuttingDown) => Err(unavailable("the center is shutting down")),
            Err(Closed::Stopped) => Err(unavailable("the check-in writer stopped")),
        }
    }

    /// Stops accepting writes and waits until the queued ones are stored.
    pub async fn close(&self) {
        self.0.close().await;
    }
}

fn unavailable(message: &str) -> CenterError {
    CenterError::new(
        ErrorKind::Unavailable,
        format!("the check-in was not stored: {message}"),
    )
}

impl Center {
    /// Plans for a terminal's reported inventory, stores the check-in, returns the answer.
    pub async fn check_in(
        &self,
        terminal: &KnownTerminal,
        request: CheckinRequest,
        address: String,
    ) -> CenterResult<CheckinAnswer> {
        // On a site server, what the terminal reported goes to the center too: queued in the
        // transaction that stores the check-in, before it is answered.
        let now = crate::unix_now();
        let held_timestamp = request.tuf_timestamp_version;
        let held_roles = request.tuf_held.clone();
        if let Some(held) = &held_roles
            && held.len() > MAX_TUF_HELD
        {
            return Err(CenterError::new(
                ErrorKind::DocumentInvalid,
                format!(
                    "the check-in: $.tuf_held names {} roles; name at most {MAX_TUF_HELD}",
                    held.len()
                ),
            ));
        }
        let relay = self.checkin_relay(&terminal.id, &request, &address, now);
        let extras = self.answer_extras(terminal, &request).await;
        let answer = self
            .check_in_at(terminal, request, address, now, relay, extras)
            .await;
        // Answered or refused, a woken terminal's turn is over: the next one may be woken.
        self.waits.checked_in(&terminal.id);
        let mut answer = answer?;
        self.relay_queued();
        if let Some(held) = held_timestamp
            && let Some((version, document)) = self.served_timestamp()
            && version != held
        {
            answer.add_timestamp(&document);
        }
        if let Some(held) = &held_roles {
            let documents = self.newer_metadata(held).await;
            if !documents.is_empty() {
                answer.add_metadata(&documents);
            }
        }
        Ok(answer)
    }

    /// The signed metadata documents this process serves in another version than `held`
    /// (role → version) names, by the name `/tuf/metadata/` serves each under: the snapshot
    /// first, then the targets roles, while they fit in [`MAX_CHECKIN_METADATA_BYTES`]. Roles
    /// this process does not serve are ignored; the agent fetches whatever is missing.
    async fn newer_metadata(&self, held: &BTreeMap<String, u64>) -> BTreeMap<String, String> {
        let snapshot_first =
            held.iter()
                .filter(|(role, _)| role.as_str() == "snapshot")
                .chain(held.iter().filter(|(role, _)| {
                    !matches!(role.as_str(), "snapshot" | "timestamp" | "root")
                }));
        let mut documents = BTreeMap::new();
        let mut total = 0;
        // What this process serves: a site's mirror, or the center's repository as served now
        // (read once, so versions and documents agree).
        let served = self.trust.served();
        let current: BTreeMap<String, u64> = match self.site() {
            Some(site) => site.mirror.current_versions(),
            None => served
                .latest
                .iter()
                .map(|(role, &(version, _))| (role.clone(), version))
                .collect(),
        };
        for (role, &have) in snapshot_first {
            let Some(&now) = current.get(role.as_str()).filter(|&&now| now != have) else {
                continue;
            };
            let name = format!("{now}.{role}.json");
            let text = match self.site() {
                Some(site) => site
                    .mirror
                    .metadata(&name)
                    .await
                    .ok()
                    .and_then(|file| String::from_utf8(file.bytes).ok()),
                None => served
                    .documents
                    .get(role.as_str())
                    .map(|document| document.to_string()),
            };
            if let Some(text) = text
                && total + text.len() <= MAX_CHECKIN_METADATA_BYTES
            {
                total += text.len();
                documents.insert(name, text);
            }
        }
        documents
    }

    /// The signed `timestamp.json` this process serves and its version: the center's own, or
    /// a site's verified mirror of it (`None` before there is one).
    pub(crate) fn served_timestamp(&self) -> Option<(u64, std::sync::Arc<[u8]>)> {
        match self.site() {
            Some(site) => site.mirror.timestamp(),
            None => {
                let timestamp = self.trust.served().timestamp.clone()?;
                Some((timestamp.version, timestamp.doc.as_bytes().into()))
            }
        }
    }

    /// A check-in a site answered at `at`, relayed by it: stored as the terminal's latest
    /// state, planned again here for the center's view. An inventory this catalog cannot
    /// validate is logged and dropped: the site's queue must not wait for it forever.
    pub(crate) async fn record_relayed_checkin(
        &self,
        terminal: &KnownTerminal,
        request: CheckinRequest,
        address: String,
        at: i64,
    ) -> CenterResult<()> {
        match self
            .check_in_at(
                terminal,
                request,
                address,
                at,
                None,
                AnswerExtras::default(),
            )
            .await
        {
            Ok(_) => Ok(()),
            Err(err) if err.kind == ErrorKind::InventoryInvalid => {
                tracing::warn!(terminal = %terminal.id, %err, "relayed check-in not recorded");
                Ok(())
            }
            Err(err) => Err(err),
        }
    }

    async fn check_in_at(
        &self,
        terminal: &KnownTerminal,
        request: CheckinRequest,
        address: String,
        at: i64,
        relay: Option<QueueItem>,
        extras: AnswerExtras,
    ) -> CenterResult<CheckinAnswer> {
        let started = Instant::now();
        if let Some(claimed) = &request.terminal
            && claimed != &terminal.id
        {
            return Err(CenterError::new(
                ErrorKind::IdentityMismatch,
                format!(
                    "this client certificate is terminal {:?}'s; it cannot check in as {claimed:?}",
                    terminal.id
                ),
            ));
        }
        let now = crate::unix_now();
        let policy = self.group_policy(&terminal.group).await?;
        // What the store keeps is serialised before the request's parts move into the model.
        let installed_json = request
            .installed
            .as_ref()
            .map(|i| serde_json::to_string(i).expect("inventory serialises"));
        let hardware_json = request
            .hardware
            .as_ref()
            .map(|h| serde_json::to_string(h).expect("hardware serialises"));
        let doc = TerminalDoc {
            id: terminal.id.clone(),
            user: terminal.user.clone(),
            hardware: request
                .hardware
                .unwrap_or_else(|| terminal.hardware.clone()),
            installed: request.installed,
            policy: PolicyDoc {
                tz: request.tz.clone().or_else(|| terminal.tz.clone()),
                ..PolicyDoc::clone(&policy)
            },
        };
        let snapshot = self.catalog();
        let mut model = doc.validate("check-in", &snapshot.catalog).map_err(|err| {
            CenterError::invalid(
                ErrorKind::InventoryInvalid,
                format!(
                    "the reported inventory of terminal {} does not fit the catalog: {err}",
                    terminal.id
                ),
                &err,
            )
        })?;
        // Checked before anything is written; stored (below) only when the set changed.
        let interfaces = match &request.interfaces {
            Some(reported) => Some(interface_rows(&terminal.id, reported)?),
            None => None,
        };
        // Rollout rings may reach terminals by group.
        model.group = Some(terminal.group.clone());
        let plan = planners::render_plan(&snapshot, Timestamp::from_unix_seconds(now), &model);
        let plan_id = hex::encode(Sha256::digest(plan.json.as_bytes()));
        let answer = answer_json(&plan_id, &plan.json, self.next_checkin_secs(), now, &extras);
        let write = CheckinWrite {
            terminal: terminal.id.clone(),
            at,
            address,
            installed: installed_json,
            hardware: hardware_json,
            tz: request.tz,
            agent_version: request.agent_version,
            plan: PlanWrite {
                id: plan_id,
                action: plan.action.as_str().to_owned(),
                uncovered: plan.uncovered,
                doc: plan.json,
            },
            relay,
        };
        self.checkins.write(write).await?;
        if self.live.watched() {
            self.live.publish(crate::live::Happening {
                kind: "checkin".to_owned(),
                terminal: terminal.id.clone(),
                at: crate::rfc3339(now),
                summary: format!("plan: {}", plan.action.as_str()),
            });
        }
        if let Some(rows) = interfaces {
            self.record_interfaces(terminal, now, &rows).await?;
        }
        self.metrics.checkins.fetch_add(1, Relaxed);
        self.metrics.plans[plan.action.index()].fetch_add(1, Relaxed);
        self.metrics
            .checkin_seconds
            .observe_duration(started.elapsed());
        Ok(CheckinAnswer(answer))
    }

    /// What a check-in answer carries besides the plan, looked up only when the request asks:
    /// the e-mailed consent answer for the plan the terminal waits on, and the operators'
    /// messages newer than the terminal's.
    async fn answer_extras(
        &self,
        terminal: &KnownTerminal,
        request: &CheckinRequest,
    ) -> AnswerExtras {
        let consent = match &request.consent_waiting {
            Some(plan_id) => self.consent_answer(&terminal.id, plan_id).await,
            None => None,
        };
        let (messages, messages_through) = match request.messages_after {
            Some(after) => self.checkin_messages(terminal, after).await,
            None => (Vec::new(), None),
        };
        AnswerExtras {
            consent,
            messages,
            messages_through,
        }
    }

    /// Stores the reported interfaces unless they are what this process stored last for the
    /// terminal (an agent sends them only when they changed, but again after a restart). A
    /// separate transaction from the check-in's batch: rare, and it keeps the batch narrow.
    async fn record_interfaces(
        &self,
        terminal: &KnownTerminal,
        now: i64,
        rows: &[InterfaceSeen],
    ) -> CenterResult<()> {
        let mut hasher = Sha256::new();
        for row in rows {
            for part in [&row.interface, &row.mac, &row.address] {
                hasher.update(part.as_bytes());
                hasher.update([0]);
            }
        }
        let digest = hasher.finalize();
        let digest = u64::from_le_bytes(digest[..8].try_into().expect("8 bytes")) | 1;
        if terminal.interfaces_digest.load(Relaxed) == digest {
            return Ok(());
        }
        self.store
            .record_interfaces(&terminal.id, now, rows)
            .await?;
        terminal.interfaces_digest.store(digest, Relaxed);
        Ok(())
    }

    /// The check-in interval with jitter, so a fleet started together spreads out.
    pub fn next_checkin_secs(&self) -> u64 {
        let base = self.config.checkin_interval_secs as f64;
        let spread = self.config.checkin_jitter;
        let factor = if spread > 0.0 {
            1.0 + rand::rng().random_range(-spread..=spread)
        } else {
            1.0
        };
        (base * factor).round().max(1.0) as u64
    }
}

/// A check-in's `interfaces` as the store's rows, sorted and without duplicates: one per
/// address, or one without an address for an interface that has none. Everything is the
/// terminal's word, so it is bounded and checked: names are short printable text, MACs hex
/// pairs, addresses IP addresses.
fn interface_rows(
    terminal: &str,
    reported: &[NetworkInterface],
) -> CenterResult<Vec<InterfaceSeen>> {
    let refuse = |what: String| {
        Err(CenterError::bad_request(format!(
            "the check-in of terminal {terminal}: $.interfaces{what}"
        )))
    };
    if reported.len() > MAX_INTERFACES {
        return refuse(format!(
            ": {} interfaces; at most {MAX_INTERFACES} are accepted",
            reported.len()
        ));
    }
    let mut rows = Vec::new();
    for (i, interface) in reported.iter().enumerate() {
        let name = &interface.name;
        if name.is_empty()
            || name.len() > 64
            || name.chars().any(|c| c.is_control() || c.is_whitespace())
        {
            return refuse(format!(
                "[{i}].name: {name:?} is not an interface name (1 to 64 printable characters, no spaces)"
            ));
        }
        let mac = match &interface.mac {
            None => String::new(),
            Some(mac) => {
                let pairs: Vec<&str> = mac.split(':').collect();
                let valid = (6..=20).contains(&pairs.len())
                    && pairs
                        .iter()
                        .all(|p| p.len() == 2 && p.bytes().all(|b| b.is_ascii_hexdigit()));
                if !valid {
                    return refuse(format!(
                        "[{i}].mac: {mac:?} is not a hardware address (hex pairs separated by colons)"
                    ));
                }
                mac.to_ascii_lowercase()
            }
        };
        if interface.addresses.len() > MAX_INTERFACE_ADDRESSES {
            return refuse(format!(
                "[{i}].addresses: {} addresses; at most {MAX_INTERFACE_ADDRESSES} are accepted",
                interface.addresses.len()
            ));
        }
        if interface.addresses.is_empty() {
            rows.push(InterfaceSeen {
                interface: name.clone(),
                mac: mac.clone(),
                address: String::new(),
            });
        }
        for (j, address) in interface.addresses.iter().enumerate() {
            let Ok(parsed) = address.parse::<std::net::IpAddr>() else {
                return refuse(format!(
                    "[{i}].addresses[{j}]: {address:?} is not an IP address (no prefix length)"
                ));
            };
            rows.push(InterfaceSeen {
                interface: name.clone(),
                mac: mac.clone(),
                address: parsed.to_string(),
            });
        }
    }
    rows.sort();
    rows.dedup();
    Ok(rows)
}

/// The answer to a check-in: a [`CheckinResponse`](herd_proto::api::CheckinResponse)
/// serialised by splicing the plan's JSON, which was already made to be hashed and stored,
/// instead of serialising the plan again.
#[derive(Debug)]
pub struct CheckinAnswer(String);

impl CheckinAnswer {
    /// The `CheckinResponse` JSON document.
    pub fn into_json(self) -> String {
        self.0
    }

    /// Adds `tuf_metadata` (name → signed document), as the last field.
    fn add_metadata(&mut self, documents: &BTreeMap<String, String>) {
        let object = serde_json::to_string(documents).expect("a map of strings serialises");
        debug_assert!(self.0.ends_with('}'));
        self.0.pop();
        self.0.push_str(",\"tuf_metadata\":");
        self.0.push_str(&object);
        self.0.push('}');
    }

    /// Adds `tuf_timestamp`, the signed document as a JSON string, as the last field.
    fn add_timestamp(&mut self, document: &[u8]) {
        let text = String::from_utf8_lossy(document);
        let quoted = serde_json::to_string(&*text).expect("a string serialises");
        debug_assert!(self.0.ends_with('}'));
        self.0.pop();
        self.0.push_str(",\"tuf_timestamp\":");
        self.0.push_str(&quoted);
        self.0.push('}');
    }
}

/// The optional fields of a check-in answer (`CheckinResponse`'s last three).
#[derive(Debug, Default)]
pub(crate) struct AnswerExtras {
    pub consent: Option<herd_proto::consent::ConsentAnswer>,
    pub messages: Vec<herd_proto::messages::Message>,
    pub messages_through: Option<u64>,
}

/// `CheckinResponse` as JSON, byte for byte what serde_json makes of it (fields in declaration
/// order; a hex digest and an RFC 3339 time need no escaping; the rare extras through serde).
fn answer_json(
    plan_id: &str,
    plan_json: &str,
    next_checkin_secs: u64,
    now: i64,
    extras: &AnswerExtras,
) -> String {
    let server_time = rfc3339(now);
    let mut out = String::with_capacity(plan_json.len() + plan_id.len() + server_time.len() + 80);
    out.push_str("{\"plan_id\":\"");
    out.push_str(plan_id);
    out.push_str("\",\"plan\":");
    out.push_str(plan_json);
    out.push_str(",\"next_checkin_secs\":");
    out.push_str(&next_checkin_secs.to_string());
    out.push_str(",\"server_time\":\"");
    out.push_str(&server_time);
    out.push('"');
    if let Some(consent) = &extras.consent {
        out.push_str(",\"consent\":");
        out.push_str(&serde_json::to_string(consent).expect("a consent answer serialises"));
    }
    if !extras.messages.is_empty() {
        out.push_str(",\"messages\":");
        out.push_str(&serde_json::to_string(&extras.messages).expect("messages serialise"));
    }
    if let Some(through) = extras.messages_through {
        out.push_str(",\"messages_through\":");
        out.push_str(&through.to_string());
    }
    out.push('}');
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn interface(name: &str, mac: Option<&str>, addresses: &[&str]) -> NetworkInterface {
        NetworkInterface {
            name: name.into(),
            mac: mac.map(str::to_owned),
            addresses: addresses.iter().map(|a| (*a).to_owned()).collect(),
        }
    }

    #[test]
    fn reported_interfaces_become_sorted_rows_and_bad_ones_are_named() {
        let rows = interface_rows(
            "t1",
            &[
                interface("wlan0", None, &[]),
                interface(
                    "eth0",
                    Some("52:54:00:AB:CD:EF"),
                    &["2001:db8::1", "192.0.2.1", "192.0.2.1"],
                ),
            ],
        )
        .unwrap();
        let flat: Vec<(&str, &str, &str)> = rows
            .iter()
            .map(|r| (r.interface.as_str(), r.mac.as_str(), r.address.as_str()))
            .collect();
        assert_eq!(
            flat,
            vec![
                ("eth0", "52:54:00:ab:cd:ef", "192.0.2.1"),
                ("eth0", "52:54:00:ab:cd:ef", "2001:db8::1"),
                ("wlan0", "", ""),
            ]
        );
        for (bad, says) in [
            (interface("", None, &[]), "$.interfaces[0].name"),
            (interface("eth 0", None, &[]), "$.interfaces[0].name"),
            (
                interface("eth0", Some("52:54:00"), &[]),
                "$.interfaces[0].mac",
            ),
            (
                interface("eth0", Some("zz:54:00:ab:cd:ef"), &[]),
                "$.interfaces[0].mac",
            ),
            (
                interface("eth0", None, &["192.0.2.1/24"]),
                "$.interfaces[0].addresses[0]",
            ),
            (
                interface("eth0", None, &["host.example"]),
                "$.interfaces[0].addresses[0]",
            ),
        ] {
            let err = interface_rows("t1", &[bad]).unwrap_err();
            assert_eq!(err.kind, ErrorKind::BadRequest);
            assert!(err.message.contains(says), "{says}: {err}");
        }
        let many: Vec<_> = (0..=MAX_INTERFACES)
            .map(|i| interface(&format!("e{i}"), None, &[]))
            .collect();
        assert!(
            interface_rows("t1", &many)
                .unwrap_err()
                .message
                .contains("at most")
        );
    }

    #[test]
    fn the_spliced_answer_is_what_serde_makes_of_a_checkin_response() {
        let plan: herd_proto::plan::PlanDoc = serde_json::from_str(
            r#"{"terminal":"45a","action":"switch","uncovered_now":["virus-a"],"uncovered_after":[],
                "from":{"product":"vaccine-a","version":"5.1","seq":1101},
                "to":{"product":"vaccine-b","version":"7.0","seq":1112},
                "consent_required":false,"not_before":null,
                "steps":[{"kind":"verify","product":"vaccine-b","version":"7.0","pattern":"b-1112"}],"alternatives":[],"reason":"a \"quoted\" reason"}"#,
        )
        .expect("a plan");
        let plan_json = serde_json::to_string(&plan).expect("serialises");
        let plan_id = hex::encode(Sha256::digest(plan_json.as_bytes()));
        let mut response = CheckinResponse {
            plan_id: plan_id.clone(),
            plan: plan.clone(),
            next_checkin_secs: 3517,
            server_time: rfc3339(975_000_000),
            tuf_timestamp: None,
            tuf_metadata: None,
            consent: None,
            messages: Vec::new(),
            messages_through: None,
        };
        let expected = serde_json::to_string(&response).expect("serialises");
        assert_eq!(
            answer_json(
                &plan_id,
                &plan_json,
                3517,
                975_000_000,
                &AnswerExtras::default()
            ),
            expected
        );
        // With the signed timestamp added: still what serde makes, the document byte for byte.
        let timestamp = r#"{"signed":{"_type":"timestamp","version":7},"signatures":[]}"#;
        let mut answer = CheckinAnswer(answer_json(
            &plan_id,
            &plan_json,
            3517,
            975_000_000,
            &AnswerExtras::default(),
        ));
        answer.add_timestamp(timestamp.as_bytes());
        let mut with_timestamp = response.clone();
        with_timestamp.tuf_timestamp = Some(timestamp.to_owned());
        assert_eq!(
            answer.into_json(),
            serde_json::to_string(&with_timestamp).expect("serialises")
        );
        // With every extra, and the timestamp last (where `add_timestamp` puts it).
        let extras = AnswerExtras {
            consent: Some(herd_proto::consent::ConsentAnswer {
                plan_id: "p1".into(),
                decision: herd_proto::consent::ConsentDecision::Accepted,
                decided_at: rfc3339(975_000_001),
                by: "email".into(),
            }),
            messages: vec![herd_proto::messages::Message {
                id: 7,
                at: rfc3339(975_000_002),
                from: "operator".into(),
                audience: "all".into(),
                target: None,
                site: None,
                text: "a \"quoted\" message".into(),
                reply_to: None,
            }],
            messages_through: Some(9),
        };
        response.consent = extras.consent.clone();
        response.messages = extras.messages.clone();
        response.messages_through = extras.messages_through;
        assert_eq!(
            answer_json(&plan_id, &plan_json, 3517, 975_000_000, &extras),
            serde_json::to_string(&response).expect("serialises")
        );
        let mut answer = CheckinAnswer(answer_json(
            &plan_id,
            &plan_json,
            3517,
            975_000_000,
            &extras,
        ));
        answer.add_timestamp(timestamp.as_bytes());
        response.tuf_timestamp = Some(timestamp.to_owned());
        assert_eq!(
            answer.into_json(),
            serde_json::to_string(&response).expect("serialises")
        );
        // With newer metadata after the timestamp (documents with quotes and escapes), and
        // with metadata alone.
        let documents = BTreeMap::from([
            (
                "8.snapshot.json".to_owned(),
                r#"{"signed":{"_type":"snapshot","version":8},"signatures":[]}"#.to_owned(),
            ),
            (
                "3.vendor-b.json".to_owned(),
                "{\"signed\":{\"x\":\"tab\\there\"}}\n".to_owned(),
            ),
        ]);
        let with_extras = || {
            CheckinAnswer(answer_json(
                &plan_id,
                &plan_json,
                3517,
                975_000_000,
                &extras,
            ))
        };
        let mut answer = with_extras();
        answer.add_timestamp(timestamp.as_bytes());
        answer.add_metadata(&documents);
        response.tuf_metadata = Some(documents.clone());
        assert_eq!(
            answer.into_json(),
            serde_json::to_string(&response).expect("serialises")
        );
        let mut answer = with_extras();
        answer.add_metadata(&documents);
        response.tuf_timestamp = None;
        let json = answer.into_json();
        assert_eq!(json, serde_json::to_string(&response).expect("serialises"));
        let parsed: CheckinResponse = serde_json::from_str(&json).expect("parses");
        assert_eq!(parsed.tuf_metadata, Some(documents));
    }
}
