//! Check-ins: the hot path. A check-in validates the reported inventory against the catalog,
//! plans with this thread's planner, and hands one write to the group-commit writer, which
//! stores whatever check-ins arrived meanwhile in one transaction and then answers them all —
//! so every answered check-in is stored, and the store sees one transaction per batch instead
//! of one per terminal.

use std::sync::Arc;
use std::sync::atomic::Ordering::Relaxed;
use std::time::Instant;

use herd_core::Timestamp;
use herd_proto::api::CheckinRequest;
#[cfg(test)]
use herd_proto::api::CheckinResponse;
use herd_proto::terminal::{PolicyDoc, TerminalDoc};
use herd_store::{CheckinWrite, PlanWrite, Store};
use rand::Rng as _;
use sha2::{Digest as _, Sha256};
use tokio::sync::{mpsc, oneshot};

use crate::error::{CenterError, CenterResult, ErrorKind};
use crate::metrics::Metrics;
use crate::{Center, KnownTerminal, planners, rfc3339};

/// The most check-ins one transaction stores.
const MAX_BATCH: usize = 1024;

struct Pending {
    write: CheckinWrite,
    done: oneshot::Sender<Result<(), String>>,
}

/// The group-commit writer's queue.
#[derive(Debug)]
pub struct CheckinWriter {
    queue: std::sync::Mutex<Option<mpsc::Sender<Pending>>>,
    task: std::sync::Mutex<Option<tokio::task::JoinHandle<()>>>,
}

impl std::fmt::Debug for Pending {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Pending")
            .field("terminal", &self.write.terminal)
            .finish()
    }
}

impl CheckinWriter {
    pub fn start(store: Arc<dyn Store>, metrics: Arc<Metrics>) -> CheckinWriter {
        let (tx, rx) = mpsc::channel(MAX_BATCH * 8);
        let task = tokio::spawn(write_batches(store, metrics, rx));
        CheckinWriter {
            queue: std::sync::Mutex::new(Some(tx)),
            task: std::sync::Mutex::new(Some(task)),
        }
    }

    /// Stores one check-in (with whatever else is waiting) and returns once it is committed.
    pub async fn write(&self, write: CheckinWrite) -> CenterResult<()> {
        let queue = self.queue.lock().expect("writer queue").clone();
        let queue = queue.ok_or_else(|| unavailable("the center is shutting down"))?;
        let (done, answer) = oneshot::channel();
        queue
            .send(Pending { write, done })
            .await
            .map_err(|_| unavailable("the center is shutting down"))?;
        match answer.await {
            Ok(Ok(())) => Ok(()),
            Ok(Err(message)) => Err(unavailable(&message)),
            Err(_) => Err(unavailable("the check-in writer stopped")),
        }
    }

    /// Stops accepting writes and waits until the queued ones are stored.
    pub async fn close(&self) {
        self.queue.lock().expect("writer queue").take();
        let task = self.task.lock().expect("writer task").take();
        if let Some(task) = task {
            let _ = task.await;
        }
    }
}

fn unavailable(message: &str) -> CenterError {
    CenterError::new(
        ErrorKind::Unavailable,
        format!("the check-in was not stored: {message}"),
    )
}

async fn write_batches(
    store: Arc<dyn Store>,
    metrics: Arc<Metrics>,
    mut rx: mpsc::Receiver<Pending>,
) {
    let mut batch: Vec<Pending> = Vec::with_capacity(MAX_BATCH);
    let mut writes: Vec<CheckinWrite> = Vec::with_capacity(MAX_BATCH);
    while rx.recv_many(&mut batch, MAX_BATCH).await > 0 {
        writes.extend(
            batch
                .iter_mut()
                .map(|p| std::mem::replace(&mut p.write, empty_write())),
        );
        metrics.checkin_batch_size.observe(writes.len() as f64);
        let result = store.record_checkins(&writes).await.map_err(|err| {
            tracing::error!(%err, batch = writes.len(), "storing check-ins failed");
            err.to_string()
        });
        writes.clear();
        for pending in batch.drain(..) {
            let _ = pending.done.send(result.clone());
        }
    }
}

fn empty_write() -> CheckinWrite {
    CheckinWrite {
        terminal: String::new(),
        at: 0,
        address: String::new(),
        installed: None,
        hardware: None,
        tz: None,
        agent_version: None,
        plan: PlanWrite {
            id: String::new(),
            action: String::new(),
            uncovered: 0,
            doc: String::new(),
        },
    }
}

impl Center {
    /// Plans for a terminal's reported inventory, stores the check-in, returns the answer.
    pub async fn check_in(
        &self,
        terminal: &KnownTerminal,
        request: CheckinRequest,
        address: String,
    ) -> CenterResult<CheckinAnswer> {
        // On a site server, what the terminal reported goes to the center too: queued once the
        // check-in is stored, before it is answered.
        let relayed = self
            .config
            .site
            .is_some()
            .then(|| (request.clone(), address.clone()));
        let now = crate::unix_now();
        let answer = self.check_in_at(terminal, request, address, now).await?;
        if let Some((request, address)) = relayed {
            self.queue_checkin(&terminal.id, request, address, now)
                .await?;
        }
        Ok(answer)
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
        match self.check_in_at(terminal, request, address, at).await {
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
        let model = doc.validate("check-in", &snapshot.catalog).map_err(|err| {
            CenterError::invalid(
                ErrorKind::InventoryInvalid,
                format!(
                    "the reported inventory of terminal {} does not fit the catalog: {err}",
                    terminal.id
                ),
                &err,
            )
        })?;
        let plan = planners::render_plan(&snapshot, Timestamp::from_unix_seconds(now), &model);
        let plan_id = hex::encode(Sha256::digest(plan.json.as_bytes()));
        let answer = answer_json(&plan_id, &plan.json, self.next_checkin_secs(), now);
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
        };
        self.checkins.write(write).await?;
        self.metrics.checkins.fetch_add(1, Relaxed);
        self.metrics.plans[plan.action.index()].fetch_add(1, Relaxed);
        self.metrics
            .checkin_seconds
            .observe_duration(started.elapsed());
        Ok(CheckinAnswer(answer))
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
}

/// `CheckinResponse` as JSON, byte for byte what serde_json makes of it (fields in declaration
/// order; a hex digest and an RFC 3339 time need no escaping).
fn answer_json(plan_id: &str, plan_json: &str, next_checkin_secs: u64, now: i64) -> String {
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
    out.push_str("\"}");
    out
}

#[cfg(test)]
mod tests {
    use super::*;

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
        let expected = serde_json::to_string(&CheckinResponse {
            plan_id: plan_id.clone(),
            plan,
            next_checkin_secs: 3517,
            server_time: rfc3339(975_000_000),
        })
        .expect("serialises");
        assert_eq!(
            answer_json(&plan_id, &plan_json, 3517, 975_000_000),
            expected
        );
    }
}
