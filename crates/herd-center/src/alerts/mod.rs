//! Alerts (SPEC §3.6): anything in the center raises an [`AlertEvent`] with
//! [`Alerts::raise`] (cheap and synchronous: callable from any handler); the configured rules
//! pick the channels, the throttle (`throttle.rs`) aggregates outbreaks, and what is to be sent
//! is queued durably in the store, one row per (alert, channel). The worker
//! ([`Center::deliver_alerts`], started by `herd serve`) claims due rows, sends them
//! (`channels.rs`: webhook, e-mail, SMS gateway) and records each attempt, retrying with
//! back-off, so a sink that was down receives what it missed once it is back.
//!
//! Several center processes on one PostgreSQL database throttle together: each rule's window
//! lives in the store (`alert_windows`, migration 0025), and the queueing task decides a
//! batch of raised alerts with the same pure throttle over the window it read, writing the
//! window back with the deliveries in one transaction only if no other process wrote it
//! meanwhile (else it reads again and decides again). So two processes each raising half an
//! outbreak send `burst` alerts, one summary and one digest per window between them, never
//! one per process; digests are flushed the same way, by whichever process sees the window
//! end first. On SQLite (one process per database file) the windows stay in memory and the
//! decision is taken at once, in [`Alerts::raise`].

pub mod channels;
pub mod config;
pub mod throttle;

use std::collections::HashSet;
use std::sync::atomic::{AtomicU64, Ordering::Relaxed};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use herd_proto::alerts::{
    AlertChannelInfo, AlertDelivery, AlertList, AlertRuleInfo, AlertSetup, AlertTestResult,
};
use herd_store::{AlertAttempt, AlertDeliveryRow, Backend, NewAlertDelivery, Store, StoreError};
use tokio::sync::{Notify, mpsc, watch};

use crate::error::{CenterError, CenterResult};
use crate::{Center, rfc3339, unix_now};
use config::{AlertsConfig, Rule, Target};
use throttle::{Notice, Offered, Throttle, Window};

/// How long a claimed delivery is leased to the process sending it (more than a send's
/// timeout): a process that dies mid-send leaves it to be retried after this.
const LEASE_SECS: i64 = 2 * channels::SEND_TIMEOUT.as_secs() as i64 + 30;
/// Deliveries claimed (and sent concurrently) at once.
const CLAIM_BATCH: u32 = 16;
/// Seconds between two counts of the exposed terminals.
const EXPOSED_CHECK_TICKS: u64 = 60;
/// The most deliveries one listing returns.
pub const MAX_LISTED: u32 = 500;

/// What an alert is about. Wire names (`as_str`) are the configuration's `kinds`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum AlertKind {
    /// A threat the catalog did not know before (a vendor's feed, a verdict).
    NewThreat,
    /// A terminal's scanner detected something.
    Detection,
    /// A sample waits for an analyst.
    SampleWaiting,
    /// More terminals exposed than `exposed_threshold`.
    Exposed,
    /// A site neither pulls nor answers a push.
    SiteUnreachable,
    /// A site's queue to the center holds more than `site_queue_threshold` items.
    SiteQueueGrowing,
    /// A rollout was halted.
    RolloutHalted,
    /// A fault bucket was escalated.
    FaultEscalated,
    /// A terminal event of a kind a rule lists in `events`.
    TerminalEvent,
}

impl AlertKind {
    pub const ALL: [AlertKind; 9] = [
        AlertKind::NewThreat,
        AlertKind::Detection,
        AlertKind::SampleWaiting,
        AlertKind::Exposed,
        AlertKind::SiteUnreachable,
        AlertKind::SiteQueueGrowing,
        AlertKind::RolloutHalted,
        AlertKind::FaultEscalated,
        AlertKind::TerminalEvent,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            AlertKind::NewThreat => "new_threat",
            AlertKind::Detection => "detection",
            AlertKind::SampleWaiting => "sample_waiting",
            AlertKind::Exposed => "exposed",
            AlertKind::SiteUnreachable => "site_unreachable",
            AlertKind::SiteQueueGrowing => "site_queue_growing",
            AlertKind::RolloutHalted => "rollout_halted",
            AlertKind::FaultEscalated => "fault_escalated",
            AlertKind::TerminalEvent => "terminal_event",
        }
    }

    pub fn parse(text: &str) -> anyhow::Result<AlertKind> {
        AlertKind::ALL
            .into_iter()
            .find(|kind| kind.as_str() == text)
            .ok_or_else(|| {
                let names: Vec<&str> = AlertKind::ALL.iter().map(|k| k.as_str()).collect();
                anyhow::anyhow!("{text:?} is not a kind of alert ({})", names.join(", "))
            })
    }
}

/// One alert, as its raiser describes it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct AlertEvent {
    pub kind: AlertKind,
    /// What it is about, in a few words: a terminal id, a site id, a threat id.
    pub subject: String,
    /// The alert in a sentence.
    pub detail: String,
    /// For [`AlertKind::TerminalEvent`]: the terminal event's kind, which rules match.
    pub event: Option<String>,
}

impl AlertEvent {
    pub fn new(kind: AlertKind, subject: impl Into<String>, detail: impl Into<String>) -> Self {
        AlertEvent {
            kind,
            subject: subject.into(),
            detail: detail.into(),
            event: None,
        }
    }
}

/// The alert for a terminal event a rule listens to: its kind and data, cut short.
pub fn terminal_event(terminal: &str, kind: &str, data: &str) -> AlertEvent {
    const SHOWN: usize = 300;
    let mut shown: String = data.chars().take(SHOWN).collect();
    if shown.len() < data.len() {
        shown.push('…');
    }
    AlertEvent {
        kind: AlertKind::TerminalEvent,
        subject: terminal.to_owned(),
        detail: format!("event {kind}: {shown}"),
        event: Some(kind.to_owned()),
    }
}

/// The new threats a catalog change brought: one alert each (an outbreak of them is
/// aggregated like any other).
pub fn new_threats<'a>(
    before: &herd_core::Catalog,
    after: impl IntoIterator<Item = &'a herd_core::Threat>,
    vendor: &str,
) -> Vec<AlertEvent> {
    let known: HashSet<&str> = before.threats.iter().map(|t| t.id.as_str()).collect();
    after
        .into_iter()
        .filter(|threat| !known.contains(threat.id.as_str()))
        .map(|threat| {
            AlertEvent::new(
                AlertKind::NewThreat,
                threat.id.clone(),
                format!(
                    "{} ({} danger, discovered {}), first published by {vendor}",
                    threat.name,
                    threat.danger.as_str(),
                    threat.discovered
                ),
            )
        })
        .collect()
}

/// What [`Alerts`] hands to its queueing task.
#[derive(Debug)]
enum Queued {
    /// Decided already: to be stored as they are.
    Deliveries(Vec<NewAlertDelivery>),
    /// Alerts for the throttle shared through the store, to be decided there.
    Offers(Vec<SharedOffer>),
}

/// One alert for one rule, waiting for the shared throttle.
#[derive(Debug)]
struct SharedOffer {
    /// Index into the configuration's rules.
    rule: usize,
    kind: &'static str,
    subject: String,
    text: String,
    now: i64,
}

/// The center's alerting: rules, throttle, and the hand-off to the durable queue.
#[derive(Debug)]
pub struct Alerts {
    config: Arc<AlertsConfig>,
    /// The windows of a process alone on its database; unused when `shared`.
    throttle: Mutex<Throttle>,
    /// Other processes may raise alerts on the same database: the windows live in the store.
    shared: bool,
    /// To the task that queues deliveries in the store.
    queue: mpsc::UnboundedSender<Queued>,
    /// Wakes the delivery worker when something was queued.
    queued: Arc<Notify>,
    /// Conditions that are on (a site unreachable…), so a condition alerts once per onset.
    raised_conditions: Mutex<HashSet<String>>,
    /// Terminal event kinds some rule listens to.
    event_kinds: HashSet<String>,
    pub raised: AtomicU64,
}

impl Alerts {
    /// Starts the task that queues deliveries in `store` (it stores nothing until an alert
    /// matches a rule).
    pub(crate) fn start(config: Arc<AlertsConfig>, store: Arc<dyn Store>) -> Alerts {
        let (queue, mut incoming) = mpsc::unbounded_channel::<Queued>();
        let queued = Arc::new(Notify::new());
        let wake = queued.clone();
        let shared = store.backend() == Backend::Postgres;
        let rules = config.clone();
        tokio::spawn(async move {
            while let Some(first) = incoming.recv().await {
                let (mut batch, mut offers) = (Vec::new(), Vec::new());
                let mut take = |queued: Queued| match queued {
                    Queued::Deliveries(deliveries) => batch.extend(deliveries),
                    Queued::Offers(more) => offers.extend(more),
                };
                take(first);
                while let Ok(more) = incoming.try_recv() {
                    take(more);
                }
                if !offers.is_empty() {
                    throttle_shared(&*store, &rules, offers).await;
                }
                if !batch.is_empty() {
                    store_deliveries(&*store, &batch).await;
                }
                wake.notify_one();
            }
        });
        let event_kinds = config
            .rules
            .iter()
            .flat_map(|rule| rule.events.iter().cloned())
            .collect();
        Alerts {
            throttle: Mutex::new(Throttle::new(config.limits)),
            shared,
            config,
            queue,
            queued,
            raised_conditions: Mutex::new(HashSet::new()),
            event_kinds,
            raised: AtomicU64::new(0),
        }
    }

    pub fn config(&self) -> &AlertsConfig {
        &self.config
    }

    /// Raises an alert now: the rules that take its kind send it to their channels, unless
    /// an outbreak is being aggregated. Never blocks on I/O.
    pub fn raise(&self, event: AlertEvent) {
        self.raise_at(event, unix_now());
    }

    /// [`Alerts::raise`] at `now` (Unix seconds).
    pub fn raise_at(&self, event: AlertEvent, now: i64) {
        self.raised.fetch_add(1, Relaxed);
        let text = format!(
            "[{}] {}: {}",
            event.kind.as_str(),
            event.subject,
            event.detail
        );
        if self.shared {
            let offers: Vec<SharedOffer> = self
                .rules_for(&event)
                .map(|(rule, _)| SharedOffer {
                    rule,
                    kind: event.kind.as_str(),
                    subject: event.subject.clone(),
                    text: text.clone(),
                    now,
                })
                .collect();
            if !offers.is_empty() {
                // The receiver lives as long as the runtime; a send after it is gone is moot.
                let _ = self.queue.send(Queued::Offers(offers));
            }
            return;
        }
        let mut deliveries = Vec::new();
        {
            let mut throttle = self.throttle.lock().expect("alert throttle");
            for (_, rule) in self.rules_for(&event) {
                let offered = Offered {
                    kind: event.kind.as_str(),
                    subject: &event.subject,
                    text: &text,
                };
                for notice in throttle.offer(&rule.name, &offered, now) {
                    deliveries.extend(deliveries_of(&self.config, rule, &notice, now));
                }
            }
        }
        if !deliveries.is_empty() {
            let _ = self.queue.send(Queued::Deliveries(deliveries));
        }
    }

    /// Raises `event` when the condition `key` comes on, not again until it went off
    /// ([`Alerts::condition_off`]).
    pub fn raise_condition(&self, key: &str, event: AlertEvent) {
        let new = self
            .raised_conditions
            .lock()
            .expect("alert conditions")
            .insert(key.to_owned());
        if new {
            self.raise(event);
        }
    }

    /// The condition `key` is over: its next onset alerts again.
    pub fn condition_off(&self, key: &str) {
        self.raised_conditions
            .lock()
            .expect("alert conditions")
            .remove(key);
    }

    /// Whether some rule listens to terminal events of `kind` (checked before any work).
    pub fn wants_terminal_event(&self, kind: &str) -> bool {
        self.event_kinds.contains(kind)
    }

    /// Queues the digests of outbreak windows that ended by `now`: this process's own, or
    /// (when shared) those in `store` no other process has flushed.
    pub async fn flush_digests(&self, store: &dyn Store, now: i64) {
        if self.shared {
            flush_shared_digests(store, &self.config, now).await;
            return;
        }
        let due = self.throttle.lock().expect("alert throttle").due(now);
        let mut deliveries = Vec::new();
        for (rule_name, notice) in due {
            if let Some(rule) = self.config.rules.iter().find(|r| r.name == rule_name) {
                deliveries.extend(deliveries_of(&self.config, rule, &notice, now));
            }
        }
        if !deliveries.is_empty() {
            let _ = self.queue.send(Queued::Deliveries(deliveries));
        }
    }

    /// Queues `text` for `recipient` alone through the e-mail channel `channel`, past rules
    /// and throttle (a consent notice is for one person, not an alert): delivered and retried
    /// like every alert.
    pub fn send_to(&self, channel: &str, recipient: &str, kind: &str, subject: &str, text: &str) {
        let delivery = NewAlertDelivery {
            channel: channel.to_owned(),
            kind: kind.to_owned(),
            subject: subject.to_owned(),
            text: text.to_owned(),
            payload:
                serde_json::json!({ "text": text, "herd": { "kind": kind, "subject": subject } })
                    .to_string(),
            created_at: unix_now(),
            recipient: Some(recipient.to_owned()),
        };
        // The receiving task lives as long as the center.
        let _ = self.queue.send(Queued::Deliveries(vec![delivery]));
    }

    /// The rules that take `event`, with their index in the configuration.
    fn rules_for<'a>(
        &'a self,
        event: &'a AlertEvent,
    ) -> impl Iterator<Item = (usize, &'a Rule)> + 'a {
        self.config
            .rules
            .iter()
            .enumerate()
            .filter(move |(_, rule)| {
                rule.kinds.contains(&event.kind)
                    && (event.kind != AlertKind::TerminalEvent
                        || event
                            .event
                            .as_ref()
                            .is_some_and(|kind| rule.events.contains(kind)))
            })
    }
}

/// What `notice` of `rule` sends: one delivery per channel of the rule.
fn deliveries_of(
    config: &AlertsConfig,
    rule: &Rule,
    notice: &Notice,
    now: i64,
) -> Vec<NewAlertDelivery> {
    let payload = payload(&rule.name, notice, now);
    rule.channels
        .iter()
        .map(|&i| NewAlertDelivery {
            channel: config.channels[i].name.clone(),
            kind: notice.kind.clone(),
            subject: notice.subject.clone(),
            text: notice.text.clone(),
            payload: payload.clone(),
            created_at: now,
            recipient: None,
        })
        .collect()
}

/// Times a shared window is read and written again while the store fails (a write another
/// process got in first is no failure: it is decided again at once).
const SHARED_STORE_ATTEMPTS: u32 = 5;

/// A rule's window as stored: `None` when it has none or its text cannot be read (a window
/// written by a later version: it starts over, which sends at most `burst` alerts again).
fn stored_window(rule: &str, state: &str) -> Option<Window> {
    match serde_json::from_str::<Option<Window>>(state) {
        Ok(window) => window,
        Err(err) => {
            tracing::warn!(rule, %err, "an unreadable alert window in the store; starting it over");
            None
        }
    }
}

/// Decides `offers` with the shared windows: per rule, reads its window, offers every alert
/// to the pure throttle over it, and writes the window back with what is to be sent, unless
/// another process wrote it first (then all over again, from what that process left).
async fn throttle_shared(store: &dyn Store, config: &AlertsConfig, offers: Vec<SharedOffer>) {
    let mut by_rule: std::collections::BTreeMap<usize, Vec<SharedOffer>> = Default::default();
    for offer in offers {
        by_rule.entry(offer.rule).or_default().push(offer);
    }
    for (index, offers) in by_rule {
        let rule = &config.rules[index];
        let mut failures = 0;
        loop {
            let written = match store.alert_window(&rule.name).await {
                Ok(row) => {
                    let (version, window) = match row {
                        Some(row) => (row.version, stored_window(&rule.name, &row.state)),
                        None => (0, None),
                    };
                    let mut throttle = Throttle::new(config.limits);
                    if let Some(window) = window {
                        throttle.set_window(&rule.name, window);
                    }
                    let mut deliveries = Vec::new();
                    for offer in &offers {
                        let offered = Offered {
                            kind: offer.kind,
                            subject: &offer.subject,
                            text: &offer.text,
                        };
                        for notice in throttle.offer(&rule.name, &offered, offer.now) {
                            deliveries.extend(deliveries_of(config, rule, &notice, offer.now));
                        }
                    }
                    let state = serde_json::to_string(&throttle.take_window(&rule.name))
                        .expect("a window serialises");
                    store
                        .alert_window_replace(&rule.name, version, &state, &deliveries)
                        .await
                }
                Err(err) => Err(err),
            };
            match written {
                Ok(true) => break,
                // Another process moved the window since it was read: decide again.
                Ok(false) => continue,
                Err(err) if failures + 1 < SHARED_STORE_ATTEMPTS => {
                    failures += 1;
                    tracing::warn!(%err, rule = %rule.name, failures, "cannot throttle alerts in the store; trying again");
                    tokio::time::sleep(Duration::from_secs(u64::from(failures))).await;
                }
                Err(err) => {
                    tracing::error!(%err, rule = %rule.name, alerts = offers.len(), "alerts lost: the store kept failing");
                    break;
                }
            }
        }
    }
}

/// Flushes the shared windows that ended by `now`: each one's digest is queued by the process
/// that writes the window first; the others find it written and leave it.
async fn flush_shared_digests(store: &dyn Store, config: &AlertsConfig, now: i64) {
    let windows = match store.alert_windows().await {
        Ok(windows) => windows,
        Err(err) => {
            tracing::warn!(%err, "cannot read the alert windows");
            return;
        }
    };
    for row in windows {
        let Some(rule) = config.rules.iter().find(|r| r.name == row.rule) else {
            continue;
        };
        let Some(window) = stored_window(&rule.name, &row.state) else {
            continue;
        };
        let mut throttle = Throttle::new(config.limits);
        throttle.set_window(&rule.name, window.clone());
        let due = throttle.due(now);
        let after = throttle.take_window(&rule.name);
        if due.is_empty() && after.as_ref() == Some(&window) {
            continue;
        }
        let deliveries: Vec<NewAlertDelivery> = due
            .iter()
            .flat_map(|(_, notice)| deliveries_of(config, rule, notice, now))
            .collect();
        let state = serde_json::to_string(&after).expect("a window serialises");
        // Written by another process since it was read (its digest, or new alerts): that
        // process's word stands, and the next tick looks again.
        if let Err(err) = store
            .alert_window_replace(&rule.name, row.version, &state, &deliveries)
            .await
        {
            tracing::warn!(%err, rule = %rule.name, "cannot flush an alert window");
        }
    }
}

/// The JSON a webhook receives: `text` is what Slack-compatible services show; `herd` is for
/// programs.
fn payload(rule: &str, notice: &Notice, now: i64) -> String {
    serde_json::json!({
        "text": notice.text,
        "herd": {
            "kind": notice.kind,
            "subject": notice.subject,
            "count": notice.count,
            "rule": rule,
            "at": rfc3339(now),
        }
    })
    .to_string()
}

/// Stores deliveries, trying again a few times while the store fails (they are lost only if
/// it stays down for the whole time, and said so in the log).
async fn store_deliveries(store: &dyn Store, batch: &[NewAlertDelivery]) {
    for attempt in 1..=5u32 {
        match store.alert_enqueue(batch).await {
            Ok(()) => return,
            Err(err) if attempt < 5 => {
                tracing::warn!(%err, attempt, "cannot queue alert deliveries; trying again");
                tokio::time::sleep(Duration::from_secs(u64::from(attempt))).await;
            }
            Err(err) => {
                tracing::error!(%err, deliveries = batch.len(), "alert deliveries lost: the store kept failing");
            }
        }
    }
}

impl Center {
    /// The alert worker: sends due deliveries when woken (something was queued) and every
    /// second (retries coming due, digests of windows that ended), until `shutdown`.
    pub async fn deliver_alerts(self: Arc<Center>, mut shutdown: watch::Receiver<bool>) {
        let mut tick = tokio::time::interval(Duration::from_secs(1));
        let mut ticks: u64 = 0;
        loop {
            tokio::select! {
                _ = tick.tick() => ticks += 1,
                _ = self.alerts.queued.notified() => {}
                _ = shutdown.changed() => return,
            }
            if ticks % EXPOSED_CHECK_TICKS == 1 {
                self.check_exposed().await;
            }
            self.alerts.flush_digests(&*self.store, unix_now()).await;
            if let Err(err) = self.deliver_due_alerts().await {
                tracing::warn!(%err, "cannot read the alert queue");
            }
        }
    }

    /// Raises `exposed` when more terminals than `exposed_threshold` have an `exposed` plan
    /// (plans change at check-in, so after a catalog change the count rises as terminals check
    /// in); once per onset. Reads at most threshold + 1 rows.
    pub async fn check_exposed(&self) {
        let threshold = self.alerts.config.exposed_threshold;
        let wanted = self
            .alerts
            .config
            .rules
            .iter()
            .any(|rule| rule.kinds.contains(&AlertKind::Exposed));
        if threshold == 0 || !wanted {
            return;
        }
        let query = herd_store::TerminalQuery {
            action: Some("exposed".to_owned()),
            limit: u32::try_from(threshold.saturating_add(1)).unwrap_or(u32::MAX),
            ..Default::default()
        };
        match self.store.terminals(&query).await {
            Ok(rows) if rows.len() as u64 > threshold => self.alerts.raise_condition(
                "exposed",
                AlertEvent::new(
                    AlertKind::Exposed,
                    "fleet",
                    format!(
                        "more than {threshold} terminals are exposed (no product they may \
                         switch to covers what they lack), for example {}; \
                         `herd terminals --exposed` lists them",
                        rows.iter()
                            .take(5)
                            .map(|r| r.id.as_str())
                            .collect::<Vec<_>>()
                            .join(", ")
                    ),
                ),
            ),
            Ok(_) => self.alerts.condition_off("exposed"),
            Err(err) => tracing::warn!(%err, "cannot count the exposed terminals"),
        }
    }

    /// Sends every delivery due now, a batch at a time; returns how many were attempted.
    pub async fn deliver_due_alerts(&self) -> Result<usize, StoreError> {
        let mut attempted = 0;
        loop {
            let now = unix_now();
            let claimed = self
                .store
                .alert_claim(now, now + LEASE_SECS, CLAIM_BATCH)
                .await?;
            if claimed.is_empty() {
                return Ok(attempted);
            }
            attempted += claimed.len();
            // Channels are sent to concurrently, each channel's deliveries in order (a summary
            // after the alerts it follows).
            let mut by_channel: Vec<(String, Vec<AlertDeliveryRow>)> = Vec::new();
            for row in claimed {
                match by_channel
                    .iter_mut()
                    .find(|(name, _)| *name == row.delivery.channel)
                {
                    Some((_, rows)) => rows.push(row),
                    None => by_channel.push((row.delivery.channel.clone(), vec![row])),
                }
            }
            let mut sends = tokio::task::JoinSet::new();
            for (name, rows) in by_channel {
                let target = self.alerts.config.channel(&name).map(|c| c.target.clone());
                sends.spawn_blocking(move || {
                    rows.into_iter()
                        .map(|row| {
                            let result = match &target {
                                Some(target) => channels::send(target, &outgoing(&row)),
                                None => Err(format!("channel {name:?} is no longer configured")),
                            };
                            (row, target.is_some(), result)
                        })
                        .collect::<Vec<_>>()
                });
            }
            let mut results = Vec::new();
            while let Some(joined) = sends.join_next().await {
                results.extend(joined.unwrap_or_default());
            }
            for (row, configured, result) in results {
                let at = unix_now();
                let outcome = match result {
                    Ok(()) => AlertAttempt::Delivered,
                    Err(error)
                        if !configured || row.attempts >= self.alerts.config.max_attempts =>
                    {
                        tracing::error!(id = row.id, channel = %row.delivery.channel, %error, "alert given up");
                        AlertAttempt::GaveUp { error }
                    }
                    Err(error) => {
                        let wait = self.alerts.config.backoff_secs(row.attempts);
                        tracing::warn!(id = row.id, channel = %row.delivery.channel, %error, retry_in_secs = wait, "alert not delivered");
                        AlertAttempt::Retry {
                            next_attempt_at: at + wait as i64,
                            error,
                        }
                    }
                };
                self.store.alert_attempted(row.id, at, &outcome).await?;
            }
        }
    }

    /// Sends a test alert to channel `name` now, past rules, throttle and queue, and says
    /// whether the sink took it.
    pub async fn test_alert_channel(&self, name: &str) -> CenterResult<AlertTestResult> {
        let Some(channel) = self.alerts.config.channel(name) else {
            let names: Vec<&str> = self
                .alerts
                .config
                .channels
                .iter()
                .map(|c| c.name.as_str())
                .collect();
            return Err(CenterError::not_found(format!(
                "no alert channel {name:?}; configured: {}",
                if names.is_empty() {
                    "none ([[alerts.channels]] in the configuration file)".to_owned()
                } else {
                    names.join(", ")
                }
            )));
        };
        let target = channel.target.clone();
        let now = unix_now();
        let notice = Notice {
            kind: "test".into(),
            subject: name.to_owned(),
            text: format!(
                "[test] {name}: a test alert from the Herd center at {}",
                rfc3339(now)
            ),
            count: 1,
        };
        let row = AlertDeliveryRow {
            id: 0,
            delivery: NewAlertDelivery {
                channel: name.to_owned(),
                kind: notice.kind.clone(),
                subject: notice.subject.clone(),
                text: notice.text.clone(),
                payload: payload("test", &notice, now),
                created_at: now,
                recipient: None,
            },
            attempts: 1,
            next_attempt_at: now,
            delivered_at: None,
            failed_at: None,
            last_error: None,
        };
        let result = tokio::task::spawn_blocking(move || channels::send(&target, &outgoing(&row)))
            .await
            .map_err(|err| CenterError::internal(format!("the test send failed: {err}")))?;
        Ok(AlertTestResult {
            channel: name.to_owned(),
            delivered: result.is_ok(),
            error: result.err(),
        })
    }

    /// Deliveries newest first, before `before` when given, at most `limit` (≤ 500).
    pub async fn alert_deliveries(
        &self,
        before: Option<u64>,
        limit: Option<u32>,
    ) -> CenterResult<AlertList> {
        let limit = limit.unwrap_or(100);
        if limit == 0 || limit > MAX_LISTED {
            return Err(CenterError::bad_request(format!(
                "limit: {limit} is outside 1..={MAX_LISTED}"
            )));
        }
        // Ids are below 2^63, as the API's `int64` says.
        if let Some(id) = before.filter(|&id| id > i64::MAX as u64) {
            return Err(CenterError::bad_request(format!(
                "before: {id} is beyond the largest id, {}",
                i64::MAX
            )));
        }
        let rows = self.store.alert_deliveries(before, limit).await?;
        let next_before = (rows.len() == limit as usize)
            .then(|| rows.last().map(|r| r.id))
            .flatten();
        Ok(AlertList {
            deliveries: rows.into_iter().map(wire_delivery).collect(),
            next_before,
        })
    }

    /// The configured channels (where they deliver, without secrets) and rules.
    pub fn alert_setup(&self) -> AlertSetup {
        let config = &self.alerts.config;
        AlertSetup {
            window_secs: config.limits.window_secs as u64,
            burst: config.limits.burst,
            channels: config
                .channels
                .iter()
                .map(|c| AlertChannelInfo {
                    name: c.name.clone(),
                    kind: match &c.target {
                        Target::Webhook { .. } => "webhook",
                        Target::Email(_) => "email",
                        Target::Sms(_) => "sms",
                    }
                    .to_owned(),
                    target: match &c.target {
                        Target::Webhook { url, .. } => origin_of(url),
                        Target::Sms(sms) => origin_of(&sms.url),
                        Target::Email(email) => {
                            format!("{} via {}:{}", email.to.join(", "), email.host, email.port)
                        }
                    },
                })
                .collect(),
            rules: config
                .rules
                .iter()
                .map(|r| AlertRuleInfo {
                    name: r.name.clone(),
                    kinds: r.kinds.iter().map(|k| k.as_str().to_owned()).collect(),
                    channels: r
                        .channels
                        .iter()
                        .map(|&i| config.channels[i].name.clone())
                        .collect(),
                    events: r.events.clone(),
                })
                .collect(),
        }
    }
}

impl Center {
    /// What a site's pull says for alerts: it is reachable again, and whether its queue to
    /// the center is over `site_queue_threshold` (each condition alerts once per onset).
    pub(crate) fn site_alerts(&self, site: &str, status: Option<&herd_proto::site::SiteStatus>) {
        self.alerts
            .condition_off(&format!("site_unreachable:{site}"));
        let threshold = self.alerts.config.site_queue_threshold;
        let key = format!("site_queue_growing:{site}");
        match status {
            Some(status) if threshold > 0 && status.queue_depth > threshold => {
                self.alerts.raise_condition(
                    &key,
                    AlertEvent::new(
                        AlertKind::SiteQueueGrowing,
                        site,
                        format!(
                            "site {site} has {} items queued for the center (threshold {threshold}),                              the oldest {} s old",
                            status.queue_depth, status.queue_oldest_secs
                        ),
                    ),
                );
            }
            _ => self.alerts.condition_off(&key),
        }
    }
}

fn outgoing(row: &AlertDeliveryRow) -> channels::Outgoing<'_> {
    channels::Outgoing {
        kind: &row.delivery.kind,
        subject: &row.delivery.subject,
        text: &row.delivery.text,
        payload: &row.delivery.payload,
        recipient: row.delivery.recipient.as_deref(),
    }
}

/// `scheme://host[:port]` of a URL: webhook URLs carry their secret in the path.
fn origin_of(url: &str) -> String {
    let Some((scheme, rest)) = url.split_once("://") else {
        return String::new();
    };
    let host = rest.split(['/', '?', '#']).next().unwrap_or("");
    let host = host.rsplit('@').next().unwrap_or(host);
    format!("{scheme}://{host}/…")
}

fn wire_delivery(row: AlertDeliveryRow) -> AlertDelivery {
    let state = match (row.delivered_at, row.failed_at) {
        (Some(_), _) => "delivered",
        (None, Some(_)) => "failed",
        (None, None) => "pending",
    };
    AlertDelivery {
        id: row.id,
        channel: row.delivery.channel,
        kind: row.delivery.kind,
        subject: row.delivery.subject,
        // A notice to one person (consent by e-mail) carries links that answer for them:
        // operators see whom it went to, not the links.
        text: match &row.delivery.recipient {
            Some(recipient) => format!("a notice to {recipient} (its links are not shown)"),
            None => row.delivery.text,
        },
        created_at: rfc3339(row.delivery.created_at),
        state: state.to_owned(),
        attempts: row.attempts,
        next_attempt_at: (state == "pending").then(|| rfc3339(row.next_attempt_at)),
        delivered_at: row.delivered_at.map(rfc3339),
        failed_at: row.failed_at.map(rfc3339),
        last_error: row.last_error,
    }
}
