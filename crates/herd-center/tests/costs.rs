//! Costs that must not grow with the fleet, checked by counting what the center asks of its
//! store (not by timing): a terminal missing from the cache costs one row read, and a change
//! to one group's policy neither reads nor counts the fleet, nor makes cached terminals be
//! read again. A decorator store counts every call and passes it to a real SQLite store.
//! What an attacker can make the center spend is counted the same way: an enrolment with a
//! bogus token costs one read, and a terminal's stored events are bounded by a quota.

use std::collections::BTreeMap;
use std::sync::atomic::Ordering::Relaxed;
use std::sync::{Arc, Mutex};

use async_trait::async_trait;
use herd_center::Center;
use herd_center::config::{CenterConfig, ConfigFile};
use herd_proto::api::{CheckinRequest, EnrolRequest, EventBatch, GroupDoc, codes};
use herd_proto::terminal::PolicyDoc;
use herd_store::*;

/// A store that counts calls by method name.
#[derive(Debug)]
struct Counting {
    inner: Arc<dyn Store>,
    calls: Mutex<BTreeMap<&'static str, u64>>,
}

impl Counting {
    fn count(&self, method: &'static str) {
        *self.calls.lock().unwrap().entry(method).or_default() += 1;
    }

    fn take(&self) -> BTreeMap<&'static str, u64> {
        std::mem::take(&mut *self.calls.lock().unwrap())
    }
}

#[async_trait]
impl Store for Counting {
    fn backend(&self) -> Backend {
        self.inner.backend()
    }
    async fn ca_get_or_insert(&self, candidate: CaMaterial) -> Result<CaMaterial, StoreError> {
        self.count("ca_get_or_insert");
        self.inner.ca_get_or_insert(candidate).await
    }
    async fn ca_get(&self) -> Result<Option<CaMaterial>, StoreError> {
        self.count("ca_get");
        self.inner.ca_get().await
    }
    async fn ca_replace(
        &self,
        expected_generation: u64,
        replacement: CaMaterial,
    ) -> Result<CaMaterial, StoreError> {
        self.count("ca_replace");
        self.inner
            .ca_replace(expected_generation, replacement)
            .await
    }
    async fn revisions(&self) -> Result<Revisions, StoreError> {
        self.count("revisions");
        self.inner.revisions().await
    }
    async fn feeds(&self) -> Result<(u64, Vec<StoredFeed>), StoreError> {
        self.count("feeds");
        self.inner.feeds().await
    }
    async fn publish_feed(
        &self,
        feed: StoredFeed,
        claims: &FeedClaims,
        check: &(
             dyn for<'a> Fn(&'a [StoredFeed], &'a Registry) -> Result<(), String> + Send + Sync
         ),
    ) -> Result<Result<PublishOutcome, String>, StoreError> {
        self.count("publish_feed");
        self.inner.publish_feed(feed, claims, check).await
    }
    async fn package_content_set(&self, content: &PackageContent) -> Result<(), StoreError> {
        self.count("package_content_set");
        self.inner.package_content_set(content).await
    }
    async fn package_contents(&self) -> Result<Vec<PackageContent>, StoreError> {
        self.count("package_contents");
        self.inner.package_contents().await
    }
    async fn tuf_state(&self) -> Result<TufState, StoreError> {
        self.count("tuf_state");
        self.inner.tuf_state().await
    }
    async fn tuf_initialise(
        &self,
        root: &TufDocument,
        keys: &[OnlineKeyRow],
    ) -> Result<bool, StoreError> {
        self.count("tuf_initialise");
        self.inner.tuf_initialise(root, keys).await
    }
    async fn tuf_sign(
        &self,
        expected_revision: u64,
        signed: &TufSigned,
    ) -> Result<u64, StoreError> {
        self.count("tuf_sign");
        self.inner.tuf_sign(expected_revision, signed).await
    }
    async fn tuf_root_install(
        &self,
        expected_revision: u64,
        root: &TufDocument,
        active_keyids: &[String],
    ) -> Result<u64, StoreError> {
        self.count("tuf_root_install");
        self.inner
            .tuf_root_install(expected_revision, root, active_keyids)
            .await
    }
    async fn tuf_online_key_add(&self, key: &OnlineKeyRow) -> Result<u64, StoreError> {
        self.count("tuf_online_key_add");
        self.inner.tuf_online_key_add(key).await
    }
    async fn tuf_vendor_key_put(&self, key: &VendorKeyRow) -> Result<u64, StoreError> {
        self.count("tuf_vendor_key_put");
        self.inner.tuf_vendor_key_put(key).await
    }
    async fn tuf_document(
        &self,
        role: &str,
        version: Option<u64>,
    ) -> Result<Option<TufDocument>, StoreError> {
        self.count("tuf_document");
        self.inner.tuf_document(role, version).await
    }
    async fn catalog_inputs(&self) -> Result<(u64, Vec<StoredFeed>, Registry), StoreError> {
        self.count("catalog_inputs");
        self.inner.catalog_inputs().await
    }
    async fn threat_set_status(&self, threat: &str, status: Approval) -> Result<(), StoreError> {
        self.count("threat_set_status");
        self.inner.threat_set_status(threat, status).await
    }
    async fn threat_reassign(&self, threat: &str, vendor: &str) -> Result<(), StoreError> {
        self.count("threat_reassign");
        self.inner.threat_reassign(threat, vendor).await
    }
    async fn vendor_set_status(&self, vendor: &str, status: Approval) -> Result<(), StoreError> {
        self.count("vendor_set_status");
        self.inner.vendor_set_status(vendor, status).await
    }
    async fn package_bytes_of(&self, vendor: &str) -> Result<u64, StoreError> {
        self.count("package_bytes_of");
        self.inner.package_bytes_of(vendor).await
    }
    async fn packages(&self) -> Result<Vec<PackageRow>, StoreError> {
        self.count("packages");
        self.inner.packages().await
    }
    async fn package_delete(&self, sha256: &str) -> Result<bool, StoreError> {
        self.count("package_delete");
        self.inner.package_delete(sha256).await
    }
    async fn package_put(&self, package: PackageRow) -> Result<bool, StoreError> {
        self.count("package_put");
        self.inner.package_put(package).await
    }
    async fn package_get(&self, sha256: &str) -> Result<Option<PackageRow>, StoreError> {
        self.count("package_get");
        self.inner.package_get(sha256).await
    }
    async fn api_token_insert(&self, token: ApiTokenRow) -> Result<(), StoreError> {
        self.count("api_token_insert");
        self.inner.api_token_insert(token).await
    }
    async fn api_token_find(&self, hash: &str) -> Result<Option<ApiTokenRow>, StoreError> {
        self.count("api_token_find");
        self.inner.api_token_find(hash).await
    }
    async fn api_tokens_count(&self) -> Result<u64, StoreError> {
        self.count("api_tokens_count");
        self.inner.api_tokens_count().await
    }
    async fn enrol_token_insert(&self, token: EnrolTokenRow) -> Result<(), StoreError> {
        self.count("enrol_token_insert");
        self.inner.enrol_token_insert(token).await
    }
    async fn enrol_token_find(&self, hash: &str) -> Result<Option<EnrolTokenRow>, StoreError> {
        self.count("enrol_token_find");
        self.inner.enrol_token_find(hash).await
    }
    async fn api_tokens(&self) -> Result<Vec<ApiTokenRow>, StoreError> {
        self.count("api_tokens");
        self.inner.api_tokens().await
    }
    async fn enrol_tokens(&self) -> Result<Vec<EnrolTokenRow>, StoreError> {
        self.count("enrol_tokens");
        self.inner.enrol_tokens().await
    }
    async fn token_revoke(
        &self,
        hash_prefix: &str,
        now: i64,
        allow_last_operator: bool,
    ) -> Result<RevokedToken, StoreError> {
        self.count("token_revoke");
        self.inner
            .token_revoke(hash_prefix, now, allow_last_operator)
            .await
    }
    async fn terminal_renew_cert(
        &self,
        id: &str,
        presented_sha256: &str,
        new_sha256: &str,
    ) -> Result<(), RenewError> {
        self.count("terminal_renew_cert");
        self.inner
            .terminal_renew_cert(id, presented_sha256, new_sha256)
            .await
    }
    async fn terminal_previous_cert(&self, id: &str) -> Result<Option<String>, StoreError> {
        self.count("terminal_previous_cert");
        self.inner.terminal_previous_cert(id).await
    }
    async fn enrol(
        &self,
        token_hash: &str,
        now: i64,
        terminal: NewTerminal,
    ) -> Result<TerminalRow, EnrolError> {
        self.count("enrol");
        self.inner.enrol(token_hash, now, terminal).await
    }
    async fn terminal(&self, id: &str) -> Result<Option<TerminalRow>, StoreError> {
        self.count("terminal");
        self.inner.terminal(id).await
    }
    async fn terminals(&self, query: &TerminalQuery) -> Result<Vec<TerminalRow>, StoreError> {
        self.count("terminals");
        self.inner.terminals(query).await
    }
    async fn terminal_delete(&self, id: &str) -> Result<bool, StoreError> {
        self.count("terminal_delete");
        self.inner.terminal_delete(id).await
    }
    async fn terminal_changes(
        &self,
        after: u64,
        limit: u32,
    ) -> Result<Vec<(u64, String)>, StoreError> {
        self.count("terminal_changes");
        self.inner.terminal_changes(after, limit).await
    }
    async fn record_checkins(&self, batch: &[CheckinWrite]) -> Result<(), StoreError> {
        self.count("record_checkins");
        self.inner.record_checkins(batch).await
    }
    async fn addresses(&self, terminal: &str) -> Result<Vec<AddressRow>, StoreError> {
        self.count("addresses");
        self.inner.addresses(terminal).await
    }
    async fn record_interfaces(
        &self,
        terminal: &str,
        at: i64,
        seen: &[InterfaceSeen],
    ) -> Result<(), StoreError> {
        self.count("record_interfaces");
        self.inner.record_interfaces(terminal, at, seen).await
    }
    async fn interfaces(&self, terminal: &str) -> Result<Vec<InterfaceRow>, StoreError> {
        self.count("interfaces");
        self.inner.interfaces(terminal).await
    }
    async fn groups(&self) -> Result<Vec<(GroupRow, u64)>, StoreError> {
        self.count("groups");
        self.inner.groups().await
    }
    async fn group_policies(&self) -> Result<Vec<GroupRow>, StoreError> {
        self.count("group_policies");
        self.inner.group_policies().await
    }
    async fn group_put(&self, group: GroupRow) -> Result<(), StoreError> {
        self.count("group_put");
        self.inner.group_put(group).await
    }
    async fn group_delete(&self, id: &str) -> Result<(), StoreError> {
        self.count("group_delete");
        self.inner.group_delete(id).await
    }
    async fn rules(&self) -> Result<Vec<RuleRow>, StoreError> {
        self.count("rules");
        self.inner.rules().await
    }
    async fn rules_replace(&self, rules: &[RuleRow]) -> Result<(), StoreError> {
        self.count("rules_replace");
        self.inner.rules_replace(rules).await
    }
    async fn events_append(&self, events: &[EventRow]) -> Result<AppendOutcome, StoreError> {
        self.count("events_append");
        self.inner.events_append(events).await
    }
    async fn events_append_many(
        &self,
        batches: &[EventsWrite],
    ) -> Result<Vec<Result<AppendOutcome, StoreError>>, StoreError> {
        self.count("events_append_many");
        self.inner.events_append_many(batches).await
    }
    async fn events_count(&self, terminal: &str) -> Result<u64, StoreError> {
        self.count("events_count");
        self.inner.events_count(terminal).await
    }
    async fn events(
        &self,
        terminal: Option<&str>,
        after_seq: u64,
        limit: u32,
    ) -> Result<Vec<EventRow>, StoreError> {
        self.count("events");
        self.inner.events(terminal, after_seq, limit).await
    }
    async fn site_token_insert(&self, token: EnrolTokenRow) -> Result<(), StoreError> {
        self.count("site_token_insert");
        self.inner.site_token_insert(token).await
    }
    async fn site_enrol(
        &self,
        token_hash: &str,
        now: i64,
        id: &str,
        url: &str,
        cert_sha256: &str,
    ) -> Result<SiteRow, EnrolError> {
        self.count("site_enrol");
        self.inner
            .site_enrol(token_hash, now, id, url, cert_sha256)
            .await
    }
    async fn site(&self, id: &str) -> Result<Option<SiteRow>, StoreError> {
        self.count("site");
        self.inner.site(id).await
    }
    async fn sites(&self) -> Result<Vec<SiteRow>, StoreError> {
        self.count("sites");
        self.inner.sites().await
    }
    async fn site_contact(
        &self,
        id: &str,
        at: i64,
        status: Option<&str>,
    ) -> Result<(), StoreError> {
        self.count("site_contact");
        self.inner.site_contact(id, at, status).await
    }
    async fn site_relay_advance(&self, id: &str, through: u64) -> Result<(), StoreError> {
        self.count("site_relay_advance");
        self.inner.site_relay_advance(id, through).await
    }
    async fn site_renew(
        &self,
        id: &str,
        presented_sha256: &str,
        new_sha256: &str,
    ) -> Result<bool, StoreError> {
        self.count("site_renew");
        self.inner
            .site_renew(id, presented_sha256, new_sha256)
            .await
    }
    async fn site_request_renewal(&self, id: &str, at: i64) -> Result<bool, StoreError> {
        self.count("site_request_renewal");
        self.inner.site_request_renewal(id, at).await
    }
    async fn site_pushed(&self, id: &str, at: i64) -> Result<(), StoreError> {
        self.count("site_pushed");
        self.inner.site_pushed(id, at).await
    }
    async fn site_serves(&self, site: &str, terminal: &str) -> Result<Option<bool>, StoreError> {
        self.count("site_serves");
        self.inner.site_serves(site, terminal).await
    }
    async fn site_serves_many(
        &self,
        site: &str,
        terminals: &[&str],
    ) -> Result<std::collections::HashMap<String, bool>, StoreError> {
        self.count("site_serves_many");
        self.inner.site_serves_many(site, terminals).await
    }
    async fn replicate_catalog(
        &self,
        revision: u64,
        feeds: &[StoredFeed],
        registry: &Registry,
    ) -> Result<(), StoreError> {
        self.count("replicate_catalog");
        self.inner
            .replicate_catalog(revision, feeds, registry)
            .await
    }
    async fn replicate_groups(
        &self,
        revision: u64,
        groups: &[GroupRow],
        rules: &[RuleRow],
    ) -> Result<(), StoreError> {
        self.count("replicate_groups");
        self.inner.replicate_groups(revision, groups, rules).await
    }
    async fn terminal_adopt(&self, terminal: NewTerminal) -> Result<(), StoreError> {
        self.count("terminal_adopt");
        self.inner.terminal_adopt(terminal).await
    }
    async fn queue_push(&self, items: &[QueueItem]) -> Result<(), StoreError> {
        self.count("queue_push");
        self.inner.queue_push(items).await
    }
    async fn queue_peek(&self, limit: u32) -> Result<Vec<QueuedItem>, StoreError> {
        self.count("queue_peek");
        self.inner.queue_peek(limit).await
    }
    async fn queue_delete_through(&self, through: u64) -> Result<u64, StoreError> {
        self.count("queue_delete_through");
        self.inner.queue_delete_through(through).await
    }
    async fn queue_stats(&self) -> Result<QueueStats, StoreError> {
        self.count("queue_stats");
        self.inner.queue_stats().await
    }
    async fn console_session_insert(&self, session: &ConsoleSessionRow) -> Result<(), StoreError> {
        self.count("console_session_insert");
        self.inner.console_session_insert(session).await
    }
    async fn console_session_find(
        &self,
        hash: &str,
    ) -> Result<Option<ConsoleSessionRow>, StoreError> {
        self.count("console_session_find");
        self.inner.console_session_find(hash).await
    }
    async fn console_session_touch(&self, hash: &str, at: i64) -> Result<(), StoreError> {
        self.count("console_session_touch");
        self.inner.console_session_touch(hash, at).await
    }
    async fn console_session_delete(&self, hash: &str) -> Result<bool, StoreError> {
        self.count("console_session_delete");
        self.inner.console_session_delete(hash).await
    }
    async fn console_sessions_expire(&self, idle_before: i64) -> Result<u64, StoreError> {
        self.count("console_sessions_expire");
        self.inner.console_sessions_expire(idle_before).await
    }
    async fn console_link_insert(&self, link: &ConsoleLinkRow) -> Result<(), StoreError> {
        self.count("console_link_insert");
        self.inner.console_link_insert(link).await
    }
    async fn console_link_take(&self, hash: &str, now: i64) -> Result<LinkTaken, StoreError> {
        self.count("console_link_take");
        self.inner.console_link_take(hash, now).await
    }
    async fn fleet_counts(&self, now: i64) -> Result<Vec<FleetCountRow>, StoreError> {
        self.count("fleet_counts");
        self.inner.fleet_counts(now).await
    }
    async fn plan_reports_by_hour(
        &self,
        since: i64,
    ) -> Result<Vec<(i64, String, u64)>, StoreError> {
        self.count("plan_reports_by_hour");
        self.inner.plan_reports_by_hour(since).await
    }
    async fn rollouts(&self) -> Result<Vec<RolloutRow>, StoreError> {
        self.count("rollouts");
        self.inner.rollouts().await
    }
    async fn rollout_insert(&self, row: &RolloutRow) -> Result<bool, StoreError> {
        self.count("rollout_insert");
        self.inner.rollout_insert(row).await
    }
    async fn rollout_transition(
        &self,
        row: &RolloutRow,
        reset_counts: bool,
    ) -> Result<bool, StoreError> {
        self.count("rollout_transition");
        self.inner.rollout_transition(row, reset_counts).await
    }
    async fn rollout_count(&self, release: &str, add: RolloutCounts) -> Result<bool, StoreError> {
        self.count("rollout_count");
        self.inner.rollout_count(release, add).await
    }
    async fn fault_record(&self, fault: &herd_store::FaultWrite) -> Result<bool, StoreError> {
        self.count("fault_record");
        self.inner.fault_record(fault).await
    }
    async fn fault_buckets(&self) -> Result<Vec<herd_store::FaultBucketRow>, StoreError> {
        self.count("fault_buckets");
        self.inner.fault_buckets().await
    }
    async fn faults(
        &self,
        terminal: Option<&str>,
        bucket: Option<&str>,
        limit: u32,
    ) -> Result<Vec<herd_store::FaultRow>, StoreError> {
        self.count("faults");
        self.inner.faults(terminal, bucket, limit).await
    }
    async fn fault_rules(&self) -> Result<Vec<herd_store::FaultRuleRow>, StoreError> {
        self.count("fault_rules");
        self.inner.fault_rules().await
    }
    async fn fault_rule_put(&self, rule: &herd_store::FaultRuleRow) -> Result<(), StoreError> {
        self.count("fault_rule_put");
        self.inner.fault_rule_put(rule).await
    }
    async fn fault_rule_delete(&self, id: &str) -> Result<bool, StoreError> {
        self.count("fault_rule_delete");
        self.inner.fault_rule_delete(id).await
    }
    async fn replacements(&self) -> Result<Vec<herd_store::ReplacementRow>, StoreError> {
        self.count("replacements");
        self.inner.replacements().await
    }
    async fn replacement_put(&self, entry: &herd_store::ReplacementRow) -> Result<(), StoreError> {
        self.count("replacement_put");
        self.inner.replacement_put(entry).await
    }
    async fn faults_held(&self, limit: u32) -> Result<Vec<herd_store::FaultRow>, StoreError> {
        self.count("faults_held");
        self.inner.faults_held(limit).await
    }
    async fn fault_redecide(
        &self,
        terminal: &str,
        seq: u64,
        decision: &str,
        verdict: &str,
    ) -> Result<bool, StoreError> {
        self.count("fault_redecide");
        self.inner
            .fault_redecide(terminal, seq, decision, verdict)
            .await
    }
    async fn fault_outcome(
        &self,
        terminal: &str,
        seq: u64,
        outcome: &str,
    ) -> Result<bool, StoreError> {
        self.count("fault_outcome");
        self.inner.fault_outcome(terminal, seq, outcome).await
    }
    async fn replacement_delete(&self, program: &str, platform: &str) -> Result<bool, StoreError> {
        self.count("replacement_delete");
        self.inner.replacement_delete(program, platform).await
    }
    async fn herd_signatures(&self) -> Result<Vec<herd_store::HerdSignatureRow>, StoreError> {
        self.count("herd_signatures");
        self.inner.herd_signatures().await
    }
    async fn herd_signature_add(
        &self,
        row: &herd_store::HerdSignatureRow,
    ) -> Result<bool, StoreError> {
        self.count("herd_signature_add");
        self.inner.herd_signature_add(row).await
    }
    async fn herd_signature_remove(&self, sha256: &str) -> Result<bool, StoreError> {
        self.count("herd_signature_remove");
        self.inner.herd_signature_remove(sha256).await
    }
    async fn herd_body_signatures(
        &self,
    ) -> Result<Vec<herd_store::HerdBodySignatureRow>, StoreError> {
        self.count("herd_body_signatures");
        self.inner.herd_body_signatures().await
    }
    async fn herd_body_signatures_add(
        &self,
        rows: &[herd_store::HerdBodySignatureRow],
    ) -> Result<(), StoreError> {
        self.count("herd_body_signatures_add");
        self.inner.herd_body_signatures_add(rows).await
    }
    async fn herd_body_signature_remove(&self, name: &str) -> Result<bool, StoreError> {
        self.count("herd_body_signature_remove");
        self.inner.herd_body_signature_remove(name).await
    }
    async fn herd_threat_put(
        &self,
        row: &herd_store::HerdThreatRow,
        replace: bool,
    ) -> Result<(), StoreError> {
        self.count("herd_threat_put");
        self.inner.herd_threat_put(row, replace).await
    }
    async fn herd_threats(&self) -> Result<Vec<herd_store::HerdThreatRow>, StoreError> {
        self.count("herd_threats");
        self.inner.herd_threats().await
    }
    async fn herd_feed_rebuild(
        &self,
        build: &herd_store::HerdFeedBuild,
        at: i64,
    ) -> Result<Option<u64>, StoreError> {
        self.count("herd_feed_rebuild");
        self.inner.herd_feed_rebuild(build, at).await
    }
    async fn herd_suspect_record(
        &self,
        sha256: &str,
        terminal: &str,
        size: u64,
        signature: &str,
        at: i64,
    ) -> Result<u64, StoreError> {
        self.count("herd_suspect_record");
        self.inner
            .herd_suspect_record(sha256, terminal, size, signature, at)
            .await
    }
    async fn sample_add(&self, row: &herd_store::SampleRow) -> Result<bool, StoreError> {
        self.count("sample_add");
        self.inner.sample_add(row).await
    }
    async fn samples(&self) -> Result<Vec<herd_store::SampleRow>, StoreError> {
        self.count("samples");
        self.inner.samples().await
    }
    async fn file_verdict_record(
        &self,
        row: &herd_store::FileVerdictRow,
    ) -> Result<(), StoreError> {
        self.count("file_verdict_record");
        self.inner.file_verdict_record(row).await
    }
    async fn file_verdicts(&self) -> Result<Vec<herd_store::FileVerdictRow>, StoreError> {
        self.count("file_verdicts");
        self.inner.file_verdicts().await
    }
    async fn messages_for_site(
        &self,
        site: &str,
        after_id: u64,
        limit: u32,
    ) -> Result<Vec<herd_store::MessageRow>, StoreError> {
        self.count("messages_for_site");
        self.inner.messages_for_site(site, after_id, limit).await
    }
    async fn messages_replicate(&self, rows: &[herd_store::MessageRow]) -> Result<(), StoreError> {
        self.count("messages_replicate");
        self.inner.messages_replicate(rows).await
    }
    async fn message_newest_id(&self) -> Result<u64, StoreError> {
        self.count("message_newest_id");
        self.inner.message_newest_id().await
    }
    async fn terminal_email_set(
        &self,
        terminal: &str,
        email: Option<&str>,
        at: i64,
    ) -> Result<bool, StoreError> {
        self.count("terminal_email_set");
        self.inner.terminal_email_set(terminal, email, at).await
    }
    async fn terminal_email(&self, terminal: &str) -> Result<Option<String>, StoreError> {
        self.count("terminal_email");
        self.inner.terminal_email(terminal).await
    }
    async fn consent_request_open(
        &self,
        request: &herd_store::NewConsentRequest,
    ) -> Result<Option<herd_store::ConsentRequestRow>, StoreError> {
        self.count("consent_request_open");
        self.inner.consent_request_open(request).await
    }
    async fn consent_request(
        &self,
        id: u64,
    ) -> Result<Option<herd_store::ConsentRequestRow>, StoreError> {
        self.count("consent_request");
        self.inner.consent_request(id).await
    }
    async fn consent_request_of(
        &self,
        terminal: &str,
        plan_id: &str,
    ) -> Result<Option<herd_store::ConsentRequestRow>, StoreError> {
        self.count("consent_request_of");
        self.inner.consent_request_of(terminal, plan_id).await
    }
    async fn consent_requests_of(
        &self,
        terminal: &str,
    ) -> Result<Vec<herd_store::ConsentRequestRow>, StoreError> {
        self.count("consent_requests_of");
        self.inner.consent_requests_of(terminal).await
    }
    async fn consent_decide(
        &self,
        id: u64,
        decision: &str,
        at: i64,
        by: &str,
    ) -> Result<bool, StoreError> {
        self.count("consent_decide");
        self.inner.consent_decide(id, decision, at, by).await
    }
    async fn alert_enqueue(&self, deliveries: &[NewAlertDelivery]) -> Result<(), StoreError> {
        self.count("alert_enqueue");
        self.inner.alert_enqueue(deliveries).await
    }
    async fn alert_window(&self, rule: &str) -> Result<Option<AlertWindowRow>, StoreError> {
        self.count("alert_window");
        self.inner.alert_window(rule).await
    }
    async fn alert_windows(&self) -> Result<Vec<AlertWindowRow>, StoreError> {
        self.count("alert_windows");
        self.inner.alert_windows().await
    }
    async fn alert_window_replace(
        &self,
        rule: &str,
        expected_version: u64,
        state: &str,
        deliveries: &[NewAlertDelivery],
    ) -> Result<bool, StoreError> {
        self.count("alert_window_replace");
        self.inner
            .alert_window_replace(rule, expected_version, state, deliveries)
            .await
    }
    async fn alert_claim(
        &self,
        now: i64,
        lease_until: i64,
        limit: u32,
    ) -> Result<Vec<AlertDeliveryRow>, StoreError> {
        self.count("alert_claim");
        self.inner.alert_claim(now, lease_until, limit).await
    }
    async fn alert_attempted(
        &self,
        id: u64,
        at: i64,
        outcome: &AlertAttempt,
    ) -> Result<(), StoreError> {
        self.count("alert_attempted");
        self.inner.alert_attempted(id, at, outcome).await
    }
    async fn alert_deliveries(
        &self,
        before_id: Option<u64>,
        limit: u32,
    ) -> Result<Vec<AlertDeliveryRow>, StoreError> {
        self.count("alert_deliveries");
        self.inner.alert_deliveries(before_id, limit).await
    }
    async fn feed_source_put(&self, source: &FeedSourceRow) -> Result<(), StoreError> {
        self.count("feed_source_put");
        self.inner.feed_source_put(source).await
    }
    async fn feed_source_delete(&self, vendor: &str) -> Result<bool, StoreError> {
        self.count("feed_source_delete");
        self.inner.feed_source_delete(vendor).await
    }
    async fn feed_sources(&self) -> Result<Vec<FeedSourceRow>, StoreError> {
        self.count("feed_sources");
        self.inner.feed_sources().await
    }
    async fn feed_source_polled(
        &self,
        vendor: &str,
        url: &str,
        polled: &FeedPolled<'_>,
    ) -> Result<bool, StoreError> {
        self.count("feed_source_polled");
        self.inner.feed_source_polled(vendor, url, polled).await
    }
    async fn message_insert(&self, message: &NewMessage) -> Result<MessageRow, StoreError> {
        self.count("message_insert");
        self.inner.message_insert(message).await
    }
    async fn messages(&self, query: &MessageQuery<'_>) -> Result<Vec<MessageRow>, StoreError> {
        self.count("messages");
        self.inner.messages(query).await
    }
}

/// Methods whose cost grows with the fleet: they count or list terminals.
const FLEET_WIDE: [&str; 2] = ["groups", "terminals"];

const TERMINALS: usize = 200;

fn policy(apply: &str) -> PolicyDoc {
    PolicyDoc {
        apply: apply.to_owned(),
        min_danger: None,
        consent: None,
        window: None,
        tz: None,
        vendors: None,
    }
}

#[tokio::test]
async fn a_cache_miss_reads_one_row_and_a_group_change_reads_no_terminal() {
    herd_tls::install_crypto_provider();
    let dir = tempfile::tempdir().unwrap();
    let inner: Arc<dyn Store> = Arc::new(
        SqliteStore::open(&dir.path().join("herd.db"))
            .await
            .unwrap(),
    );
    let counting = Arc::new(Counting {
        inner: inner.clone(),
        calls: Mutex::new(BTreeMap::new()),
    });
    let file = ConfigFile::parse(
        "test",
        &format!(
            "data_dir = {:?}\n",
            dir.path().join("data").display().to_string()
        ),
    )
    .unwrap();
    let center = Center::open_with_store(CenterConfig::from_file(file).unwrap(), counting.clone())
        .await
        .unwrap();

    // A fleet in the default group, enrolled straight into the store.
    let ids: Vec<String> = (0..TERMINALS).map(|i| format!("t-{i:04}")).collect();
    enrol_in_store(&*inner, &ids, None).await;
    center.follow_terminal_changes().await.unwrap();
    counting.take();

    // Every terminal's first check-in: one row read each, nothing fleet-wide.
    for i in 0..TERMINALS {
        let known = center.known_terminal(&format!("t-{i:04}")).await.unwrap();
        let request = CheckinRequest {
            terminal: None,
            installed: None,
            hardware: None,
            tz: None,
            agent_version: None,
            interfaces: None,
            tuf_timestamp_version: None,
            consent_waiting: None,
            messages_after: None,
            tuf_held: None,
        };
        center
            .check_in(&known, request, "127.0.0.1".to_owned())
            .await
            .unwrap();
    }
    let calls = counting.take();
    assert_eq!(
        calls.get("terminal"),
        Some(&(TERMINALS as u64)),
        "{calls:?}"
    );
    for method in FLEET_WIDE {
        assert_eq!(
            calls.get(method),
            None,
            "{method} on first check-ins: {calls:?}"
        );
    }
    assert_eq!(center.cached_terminals(), TERMINALS);
    assert_eq!(calls.get("record_interfaces"), None, "{calls:?}");

    // The network map: written when a terminal reports a set this process has not stored for
    // it, not when the same set comes again, nor when none is reported (unchanged).
    let known = center.known_terminal("t-0000").await.unwrap();
    let with = |address: Option<&str>| CheckinRequest {
        terminal: None,
        installed: None,
        hardware: None,
        tz: None,
        agent_version: None,
        interfaces: address.map(|a| {
            vec![herd_proto::api::NetworkInterface {
                name: "eth0".into(),
                mac: Some("52:54:00:12:34:56".into()),
                addresses: vec![a.into()],
            }]
        }),
        tuf_timestamp_version: None,
        consent_waiting: None,
        messages_after: None,
        tuf_held: None,
    };
    for (request, writes) in [
        (with(Some("192.0.2.10")), 1),
        (with(Some("192.0.2.10")), 0),
        (with(None), 0),
        (with(Some("192.0.2.99")), 1),
    ] {
        center
            .check_in(&known, request, "127.0.0.1".to_owned())
            .await
            .unwrap();
        let calls = counting.take();
        assert_eq!(
            calls.get("record_interfaces").copied().unwrap_or(0),
            writes,
            "{calls:?}"
        );
    }

    // One group's policy changes: the groups are reloaded, no terminal is read or dropped.
    center
        .put_group(
            UNKNOWN_GROUP,
            GroupDoc {
                id: UNKNOWN_GROUP.to_owned(),
                description: String::new(),
                policy: policy("latest-same-vendor"),
                terminals: 0,
            },
        )
        .await
        .unwrap();
    for i in 0..TERMINALS {
        let known = center.known_terminal(&format!("t-{i:04}")).await.unwrap();
        let policy = center.group_policy(&known.group).await.unwrap();
        assert_eq!(policy.apply, "latest-same-vendor");
    }
    let calls = counting.take();
    assert_eq!(calls.get("terminal"), None, "{calls:?}");
    for method in FLEET_WIDE {
        assert_eq!(
            calls.get(method),
            None,
            "{method} after a group change: {calls:?}"
        );
    }
    assert_eq!(center.cached_terminals(), TERMINALS);

    // Deleting one terminal evicts exactly that one.
    center.delete_terminal("t-0007").await.unwrap();
    assert_eq!(center.cached_terminals(), TERMINALS - 1);
    let err = center.known_terminal("t-0007").await.expect_err("deleted");
    assert!(err.to_string().contains("not enrolled"), "{err}");
    let calls = counting.take();
    for method in FLEET_WIDE {
        assert_eq!(
            calls.get(method),
            None,
            "{method} after a deletion: {calls:?}"
        );
    }

    // Another center process on the same database (sharing its key-encryption key) learns of
    // a deletion from the change log and evicts exactly that terminal.
    let other_store: Arc<dyn Store> = Arc::new(
        SqliteStore::open(&dir.path().join("herd.db"))
            .await
            .unwrap(),
    );
    let other_file = ConfigFile::parse(
        "test",
        &format!(
            "data_dir = {:?}\nca_kek_file = {:?}\n",
            dir.path().join("other").display().to_string(),
            dir.path().join("data").join("ca.kek").display().to_string()
        ),
    )
    .unwrap();
    let other = Center::open_with_store(CenterConfig::from_file(other_file).unwrap(), other_store)
        .await
        .unwrap();
    for i in 0..10 {
        other.known_terminal(&format!("t-{i:04}")).await.ok();
    }
    assert_eq!(other.cached_terminals(), 9, "t-0007 is gone");
    center.delete_terminal("t-0003").await.unwrap();
    other.follow_terminal_changes().await.unwrap();
    assert_eq!(other.cached_terminals(), 8);
    assert!(other.known_terminal("t-0003").await.is_err());
    other.close().await;
    center.close().await;
}

/// Enrols terminals `ids` in the default group straight into `store` (through `site`, if
/// any), with a token made for them.
async fn enrol_in_store(store: &dyn Store, ids: &[String], site: Option<&str>) {
    store
        .enrol_token_insert(EnrolTokenRow {
            hash: "h".repeat(64),
            label: "costs".to_owned(),
            uses_left: ids.len() as u64,
            created_at: 0,
            expires_at: i64::MAX,
            reenrol_terminal: None,
        })
        .await
        .unwrap();
    for (i, id) in ids.iter().enumerate() {
        store
            .enrol(
                &"h".repeat(64),
                1,
                NewTerminal {
                    id: id.clone(),
                    user: None,
                    hardware: r#"{"kind":"phone","platform":"phone"}"#.to_owned(),
                    tz: None,
                    group: UNKNOWN_GROUP.to_owned(),
                    cert_sha256: format!("{i:064x}"),
                    enrolled_at: 1,
                    address: "127.0.0.1".to_owned(),
                    site: site.map(str::to_owned),
                },
            )
            .await
            .unwrap();
    }
}

/// A center on a counting SQLite store in `dir`, with `extra` appended to its configuration.
async fn counting_center(
    dir: &std::path::Path,
    extra: &str,
) -> (Arc<Center>, Arc<Counting>, Arc<dyn Store>) {
    herd_tls::install_crypto_provider();
    let inner: Arc<dyn Store> = Arc::new(SqliteStore::open(&dir.join("herd.db")).await.unwrap());
    let counting = Arc::new(Counting {
        inner: inner.clone(),
        calls: Mutex::new(BTreeMap::new()),
    });
    let text = format!(
        "data_dir = {:?}\n{extra}",
        dir.join("data").display().to_string()
    );
    let file = ConfigFile::parse("test", &text).unwrap();
    let center = Center::open_with_store(CenterConfig::from_file(file).unwrap(), counting.clone())
        .await
        .unwrap();
    counting.take();
    (center, counting, inner)
}

#[tokio::test]
async fn enrolment_with_a_bogus_token_signs_nothing_and_writes_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let (center, counting, _) = counting_center(dir.path(), "").await;
    // The CSR is garbage too: had it been signed before the token was checked, the refusal
    // would be `csr_invalid`.
    let request: EnrolRequest = serde_json::from_value(serde_json::json!({
        "token": "bogus",
        "csr_pem": "not a CSR",
        "hardware": {"kind": "laptop", "platform": "linux"},
    }))
    .unwrap();
    let address = "192.0.2.1".parse().unwrap();
    let err = center.enrol(request, address).await.unwrap_err();
    assert_eq!(err.code(), codes::ENROL_TOKEN_INVALID, "{err}");
    let calls = counting.take();
    assert_eq!(
        calls,
        BTreeMap::from([("enrol_token_find", 1)]),
        "one indexed read, no write, not even the placement rules"
    );
    assert_eq!(center.metrics.enrolments_refused.load(Relaxed), 1);
    assert!(
        center
            .metrics
            .render()
            .contains("herd_enrolments_refused_total 1")
    );
    center.close().await;
}

#[tokio::test]
async fn events_beyond_a_terminals_quota_are_refused_and_nothing_is_stored() {
    let dir = tempfile::tempdir().unwrap();
    let (center, counting, inner) =
        counting_center(dir.path(), "max_events_per_terminal = 3\n").await;
    enrol_in_store(&*inner, &["t-noisy".to_owned()], None).await;
    let known = center.known_terminal("t-noisy").await.unwrap();
    let batch = |seqs: std::ops::RangeInclusive<u64>| -> EventBatch {
        let events: Vec<_> = seqs
            .map(|seq| serde_json::json!({"seq": seq, "at": "2026-01-01T00:00:00Z", "kind": "scan.hit"}))
            .collect();
        serde_json::from_value(serde_json::json!({ "events": events })).unwrap()
    };
    let ack = center.append_events(&known, batch(1..=2)).await.unwrap();
    assert_eq!(ack.accepted, 2);
    counting.take();

    // Two more would make four: the whole batch is refused, and the writer is not taken.
    let err = center
        .append_events(&known, batch(3..=4))
        .await
        .unwrap_err();
    assert_eq!(err.code(), codes::QUOTA_EXCEEDED, "{err}");
    assert!(err.message.contains("max_events_per_terminal"), "{err}");
    assert_eq!(counting.take(), BTreeMap::from([("events_count", 1)]));
    assert_eq!(inner.events_count("t-noisy").await.unwrap(), 2);
    assert!(
        center
            .metrics
            .render()
            .contains("herd_events_over_quota_total 1")
    );

    // What still fits is stored, without counting again: the process knows the terminal has at
    // most the 2 it counted, plus nothing appended since.
    let ack = center.append_events(&known, batch(3..=3)).await.unwrap();
    assert_eq!((ack.accepted, ack.acked_through), (1, 3));
    assert_eq!(counting.take(), BTreeMap::from([("events_append_many", 1)]));
    // Full now by that bound: the next batch is counted before it is refused.
    let err = center
        .append_events(&known, batch(4..=4))
        .await
        .unwrap_err();
    assert_eq!(err.code(), codes::QUOTA_EXCEEDED, "{err}");
    assert_eq!(counting.take(), BTreeMap::from([("events_count", 1)]));
    center.close().await;
}

#[tokio::test]
async fn a_sites_relay_batch_asks_which_terminals_it_serves_once() {
    let dir = tempfile::tempdir().unwrap();
    let (center, counting, inner) = counting_center(dir.path(), "").await;
    inner
        .site_token_insert(EnrolTokenRow {
            hash: "s".repeat(64),
            label: "site".to_owned(),
            uses_left: 1,
            created_at: 0,
            expires_at: i64::MAX,
            reenrol_terminal: None,
        })
        .await
        .unwrap();
    inner
        .site_enrol(&"s".repeat(64), 1, "s1", "https://s1", &"c".repeat(64))
        .await
        .unwrap();
    let ids: Vec<String> = (0..3).map(|i| format!("t{i}")).collect();
    enrol_in_store(&*inner, &ids, Some("s1")).await;
    let batch: herd_proto::site::RelayBatch = serde_json::from_value(serde_json::json!({
        "items": (0..3).map(|i| serde_json::json!({
            "seq": i + 1,
            "terminal": format!("t{i}"),
            "body": {"kind": "events", "batch": {"events": [
                {"seq": 1, "at": "2026-01-01T00:00:00Z", "kind": "scan.hit"}
            ]}},
        })).collect::<Vec<_>>()
    }))
    .unwrap();
    counting.take();
    let ack = center.relay("s1", batch).await.unwrap();
    assert_eq!((ack.acked_through, ack.applied), (3, 3));
    let calls = counting.take();
    assert_eq!(calls.get("site_serves_many"), Some(&1), "{calls:?}");
    assert_eq!(calls.get("site_serves"), None, "{calls:?}");
    assert_eq!(inner.events_count("t1").await.unwrap(), 1);
}
