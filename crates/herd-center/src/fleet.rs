//! The fleet as operators see it: terminals a page at a time (optionally only a group's, only
//! those whose plan has an action, such as the exposed ones, or those whose id or user
//! matches), one terminal in detail with its plan, last report and network map, and removing a
//! terminal.

use herd_proto::api::{
    AddressSeen, InterfaceSeen, PlanReport, TerminalDetail, TerminalGap, TerminalList,
    TerminalSummary,
};
use herd_proto::plan::{Action, PlanDoc};
use herd_proto::terminal::{HardwareDoc, InstalledDoc, PolicyDoc, TerminalDoc};
use herd_store::{TerminalQuery, TerminalRow};

use crate::error::{CenterError, CenterResult, ErrorKind};
use crate::{Center, rfc3339};

/// The page sizes a listing accepts.
pub const PAGE_LIMITS: std::ops::RangeInclusive<u32> = 1..=1000;
/// The page size when none is asked for.
pub const DEFAULT_PAGE: u32 = 100;

/// Which terminals to list.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct FleetQuery {
    /// Only terminals of this group.
    pub group: Option<String>,
    /// Only terminals whose current plan has this action (one of [`Action::NAMES`]).
    pub action: Option<String>,
    /// Continue after this terminal id.
    pub after: Option<String>,
    /// The page size (within [`PAGE_LIMITS`]; [`DEFAULT_PAGE`] when absent).
    pub limit: Option<u32>,
    /// Only terminals whose id or user contains this text.
    pub search: Option<String>,
}

impl Center {
    /// The fleet, ordered by terminal id, a page at a time.
    pub async fn terminals(&self, query: FleetQuery) -> CenterResult<TerminalList> {
        let limit = query.limit.unwrap_or(DEFAULT_PAGE);
        if !PAGE_LIMITS.contains(&limit) {
            return Err(CenterError::bad_request(format!(
                "limit: {limit} is outside 1..=1000"
            )));
        }
        if let Some(action) = &query.action
            && action.parse::<Action>().is_err()
        {
            return Err(CenterError::bad_request(format!(
                "action: {action:?} is not one of {}",
                Action::NAMES.join(", ")
            )));
        }
        let rows = self
            .store
            .terminals(&TerminalQuery {
                group: query.group,
                action: query.action,
                after: query.after,
                limit: limit + 1,
                search: query.search.filter(|text| !text.is_empty()),
            })
            .await?;
        let more = rows.len() > limit as usize;
        let terminals: Vec<TerminalSummary> = rows
            .iter()
            .take(limit as usize)
            .map(summary)
            .collect::<CenterResult<_>>()?;
        let next = if more {
            terminals.last().map(|t| t.id.clone())
        } else {
            None
        };
        Ok(TerminalList { terminals, next })
    }

    /// Terminals whose current plan is `exposed`.
    pub async fn exposed(&self, query: FleetQuery) -> CenterResult<TerminalList> {
        self.terminals(FleetQuery {
            action: Some("exposed".to_owned()),
            ..query
        })
        .await
    }

    /// One terminal: its inventory, current plan, last report and network map.
    pub async fn terminal_detail(&self, id: &str) -> CenterResult<TerminalDetail> {
        let row = self.terminal_row(id).await?;
        let plan: Option<PlanDoc> = row
            .plan
            .as_deref()
            .map(serde_json::from_str)
            .transpose()
            .map_err(|err| {
                CenterError::internal(format!("terminal {id:?} has a corrupt plan: {err}"))
            })?;
        let last_report: Option<PlanReport> = row
            .last_report
            .as_deref()
            .map(serde_json::from_str)
            .transpose()
            .map_err(|err| {
                CenterError::internal(format!("terminal {id:?} has a corrupt report: {err}"))
            })?;
        let addresses = self
            .store
            .addresses(id)
            .await?
            .into_iter()
            .map(|a| AddressSeen {
                address: a.address,
                first_seen: rfc3339(a.first_seen),
                last_seen: rfc3339(a.last_seen),
                checkins: a.checkins,
            })
            .collect();
        let interfaces = self
            .store
            .interfaces(id)
            .await?
            .into_iter()
            .map(|i| InterfaceSeen {
                name: i.interface,
                mac: (!i.mac.is_empty()).then_some(i.mac),
                address: (!i.address.is_empty()).then_some(i.address),
                first_seen: rfc3339(i.first_seen),
                last_seen: rfc3339(i.last_seen),
                current: i.current,
            })
            .collect();
        Ok(TerminalDetail {
            interfaces,
            summary: summary(&row)?,
            plan_id: row.plan_id.clone(),
            plan,
            planned_at: row.planned_at.map(rfc3339),
            addresses,
            last_report,
        })
    }

    /// A terminal's current plan, the JSON exactly as it was handed to the terminal.
    pub async fn terminal_plan(&self, id: &str) -> CenterResult<String> {
        self.terminal_row(id).await?.plan.ok_or_else(|| {
            CenterError::not_found(format!("terminal {id:?} has not checked in yet"))
        })
    }

    /// The whole gaps of a terminal's plan, planned now from what it last reported.
    pub async fn terminal_gap(&self, id: &str) -> CenterResult<TerminalGap> {
        let row = self.terminal_row(id).await?;
        let corrupt = |what: &str, err: serde_json::Error| {
            CenterError::internal(format!("terminal {id:?} has a corrupt {what}: {err}"))
        };
        let hardware = serde_json::from_str(&row.hardware).map_err(|e| corrupt("hardware", e))?;
        let installed = row
            .installed
            .as_deref()
            .map(serde_json::from_str)
            .transpose()
            .map_err(|e| corrupt("inventory", e))?;
        let policy = self.group_policy(&row.group).await?;
        let doc = TerminalDoc {
            id: row.id.clone(),
            user: row.user.clone(),
            hardware,
            installed,
            policy: PolicyDoc {
                tz: row.tz.clone(),
                ..PolicyDoc::clone(&policy)
            },
        };
        let snapshot = self.catalog();
        let terminal = doc
            .validate("stored terminal", &snapshot.catalog)
            .map_err(|err| {
                CenterError::new(
                    ErrorKind::Conflict,
                    format!(
                        "terminal {id:?}'s last inventory does not fit the current catalog: {err}"
                    ),
                )
            })?;
        let now = herd_core::Timestamp::from_unix_seconds(crate::unix_now());
        let (uncovered_now, uncovered_after) = crate::planners::full_gap(&snapshot, now, &terminal);
        Ok(TerminalGap {
            terminal: row.id,
            uncovered_now,
            uncovered_after,
        })
    }

    /// Removes a terminal: its certificate stops working at once on every center process.
    pub async fn delete_terminal(&self, id: &str) -> CenterResult<()> {
        if !self.store.terminal_delete(id).await? {
            return Err(CenterError::not_found(format!(
                "no terminal {id:?} is enrolled"
            )));
        }
        self.follow_terminal_changes().await?;
        Ok(())
    }

    async fn terminal_row(&self, id: &str) -> CenterResult<TerminalRow> {
        self.store
            .terminal(id)
            .await?
            .ok_or_else(|| CenterError::not_found(format!("no terminal {id:?} is enrolled")))
    }
}

fn summary(row: &TerminalRow) -> CenterResult<TerminalSummary> {
    let corrupt = |what: &str, err: serde_json::Error| {
        CenterError::internal(format!("terminal {:?} has a corrupt {what}: {err}", row.id))
    };
    let hardware: HardwareDoc =
        serde_json::from_str(&row.hardware).map_err(|e| corrupt("hardware", e))?;
    let installed: Option<InstalledDoc> = row
        .installed
        .as_deref()
        .map(serde_json::from_str)
        .transpose()
        .map_err(|e| corrupt("inventory", e))?;
    Ok(TerminalSummary {
        id: row.id.clone(),
        user: row.user.clone(),
        hardware,
        tz: row.tz.clone(),
        group: row.group.clone(),
        installed,
        enrolled_at: rfc3339(row.enrolled_at),
        last_checkin: row.last_checkin.map(rfc3339),
        last_address: row.last_address.clone(),
        action: row.plan_action.clone(),
        uncovered: row.plan_uncovered,
    })
}
