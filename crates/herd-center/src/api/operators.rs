//! Operator endpoints: the catalog and coverage matrix, the fleet (terminals with their plan,
//! last check-in and network map; exposed terminals), groups and placement rules, tokens.

use std::sync::Arc;

use axum::Json;
use axum::body::Body;
use axum::extract::{Path, Query, State};
use axum::http::{HeaderMap, StatusCode};
use herd_core::check_identifier;
use herd_proto::api::{
    AddressSeen, CoverageMatrix, ErrorBody, GroupDoc, GroupList, NewApiToken, NewEnrolmentToken,
    PlacementRules, PlanReport, TerminalDetail, TerminalList, TerminalSummary, TokenCreated,
};
use herd_proto::catalog::CatalogDoc;
use herd_proto::plan::PlanDoc;
use herd_proto::terminal::{HardwareDoc, InstalledDoc};
use herd_store::{ApiTokenRow, EnrolTokenRow, GroupRow, Role, RuleRow, TerminalQuery, TerminalRow};
use serde::Deserialize;

use super::{MAX_JSON_BODY, parse_json, read_body};
use crate::auth::{new_secret, secret_hash};
use crate::error::{ApiErr, ApiResult};
use crate::placement;
use crate::{Center, rfc3339, unix_now};

/// The merged catalog every plan is computed from (all vendors' feeds).
#[utoipa::path(get, path = "/v1/catalog", tag = "operators",
    responses((status = 200, description = "A `herd.catalog/v1` document.", body = Object), (status = 401, body = ErrorBody)))]
pub async fn catalog(
    State(center): State<Arc<Center>>,
    headers: HeaderMap,
) -> ApiResult<Json<CatalogDoc>> {
    center.require_operator(&headers).await?;
    Ok(Json(center.catalog().doc.clone()))
}

/// Threats × products: which product covers which threat, since when.
#[utoipa::path(get, path = "/v1/coverage", tag = "operators",
    responses((status = 200, body = CoverageMatrix), (status = 401, body = ErrorBody)))]
pub async fn coverage(
    State(center): State<Arc<Center>>,
    headers: HeaderMap,
) -> ApiResult<Json<CoverageMatrix>> {
    center.require_operator(&headers).await?;
    Ok(Json(center.catalog().coverage_matrix()))
}

#[derive(Debug, Deserialize, utoipa::IntoParams)]
#[serde(deny_unknown_fields)]
#[into_params(parameter_in = Query)]
pub struct ListParams {
    /// Only terminals of this group.
    group: Option<String>,
    /// Only terminals whose current plan has this action: none, update, switch, exposed.
    action: Option<String>,
    /// Continue after this terminal id (the `next` of the previous page).
    after: Option<String>,
    /// Page size, 1..=1000 (default 100).
    limit: Option<u32>,
}

/// The fleet, ordered by terminal id, a page at a time.
#[utoipa::path(get, path = "/v1/terminals", tag = "operators", params(ListParams),
    responses((status = 200, body = TerminalList), (status = 400, body = ErrorBody), (status = 401, body = ErrorBody)))]
pub async fn list_terminals(
    State(center): State<Arc<Center>>,
    headers: HeaderMap,
    Query(params): Query<ListParams>,
) -> ApiResult<Json<TerminalList>> {
    center.require_operator(&headers).await?;
    list(&center, params).await.map(Json)
}

/// Terminals whose current plan is `exposed`: no product they may run covers every required threat.
#[utoipa::path(get, path = "/v1/exposed", tag = "operators", params(ListParams),
    responses((status = 200, body = TerminalList), (status = 401, body = ErrorBody)))]
pub async fn exposed(
    State(center): State<Arc<Center>>,
    headers: HeaderMap,
    Query(params): Query<ListParams>,
) -> ApiResult<Json<TerminalList>> {
    center.require_operator(&headers).await?;
    let params = ListParams {
        action: Some("exposed".to_owned()),
        ..params
    };
    list(&center, params).await.map(Json)
}

async fn list(center: &Center, params: ListParams) -> ApiResult<TerminalList> {
    let limit = params.limit.unwrap_or(100);
    if !(1..=1000).contains(&limit) {
        return Err(ApiErr::bad_request(format!(
            "limit: {limit} is outside 1..=1000"
        )));
    }
    if let Some(action) = &params.action {
        if !["none", "update", "switch", "exposed"].contains(&action.as_str()) {
            return Err(ApiErr::bad_request(format!(
                "action: {action:?} is not one of none, update, switch, exposed"
            )));
        }
    }
    let rows = center
        .store
        .terminals(&TerminalQuery {
            group: params.group,
            action: params.action,
            after: params.after,
            limit: limit + 1,
        })
        .await?;
    let more = rows.len() > limit as usize;
    let terminals: Vec<TerminalSummary> = rows
        .iter()
        .take(limit as usize)
        .map(summary)
        .collect::<ApiResult<_>>()?;
    let next = if more {
        terminals.last().map(|t| t.id.clone())
    } else {
        None
    };
    Ok(TerminalList { terminals, next })
}

fn summary(row: &TerminalRow) -> ApiResult<TerminalSummary> {
    let corrupt = |what: &str, err: serde_json::Error| {
        ApiErr::internal(format!("terminal {:?} has a corrupt {what}: {err}", row.id))
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

async fn terminal_row(center: &Center, id: &str) -> ApiResult<TerminalRow> {
    center
        .store
        .terminal(id)
        .await?
        .ok_or_else(|| ApiErr::not_found(format!("no terminal {id:?} is enrolled")))
}

/// One terminal: its inventory, current plan, last report and network map.
#[utoipa::path(get, path = "/v1/terminals/{id}", tag = "operators",
    params(("id" = String, Path, description = "The terminal id.")),
    responses((status = 200, body = TerminalDetail), (status = 401, body = ErrorBody), (status = 404, body = ErrorBody)))]
pub async fn terminal_detail(
    State(center): State<Arc<Center>>,
    headers: HeaderMap,
    Path(id): Path<String>,
) -> ApiResult<Json<TerminalDetail>> {
    center.require_operator(&headers).await?;
    let row = terminal_row(&center, &id).await?;
    let plan: Option<PlanDoc> = row
        .plan
        .as_deref()
        .map(serde_json::from_str)
        .transpose()
        .map_err(|err| ApiErr::internal(format!("terminal {id:?} has a corrupt plan: {err}")))?;
    let last_report: Option<PlanReport> = row
        .last_report
        .as_deref()
        .map(serde_json::from_str)
        .transpose()
        .map_err(|err| ApiErr::internal(format!("terminal {id:?} has a corrupt report: {err}")))?;
    let addresses = center
        .store
        .addresses(&id)
        .await?
        .into_iter()
        .map(|a| AddressSeen {
            address: a.address,
            first_seen: rfc3339(a.first_seen),
            last_seen: rfc3339(a.last_seen),
            checkins: a.checkins,
        })
        .collect();
    Ok(Json(TerminalDetail {
        summary: summary(&row)?,
        plan_id: row.plan_id.clone(),
        plan,
        planned_at: row.planned_at.map(rfc3339),
        addresses,
        last_report,
    }))
}

/// A terminal's current plan, exactly as it was handed to the terminal.
#[utoipa::path(get, path = "/v1/terminals/{id}/plan", tag = "operators",
    params(("id" = String, Path, description = "The terminal id.")),
    responses((status = 200, description = "The plan (SPEC §4).", body = Object), (status = 404, body = ErrorBody, description = "No such terminal, or it has not checked in yet.")))]
pub async fn terminal_plan(
    State(center): State<Arc<Center>>,
    headers: HeaderMap,
    Path(id): Path<String>,
) -> ApiResult<([(axum::http::HeaderName, &'static str); 1], String)> {
    center.require_operator(&headers).await?;
    let row = terminal_row(&center, &id).await?;
    let plan = row
        .plan
        .ok_or_else(|| ApiErr::not_found(format!("terminal {id:?} has not checked in yet")))?;
    Ok((
        [(axum::http::header::CONTENT_TYPE, "application/json")],
        plan,
    ))
}

/// Remove a terminal: its certificate stops working at once on every center process.
#[utoipa::path(delete, path = "/v1/terminals/{id}", tag = "operators",
    params(("id" = String, Path, description = "The terminal id.")),
    responses((status = 204, description = "Deleted."), (status = 404, body = ErrorBody)))]
pub async fn delete_terminal(
    State(center): State<Arc<Center>>,
    headers: HeaderMap,
    Path(id): Path<String>,
) -> ApiResult<StatusCode> {
    center.require_operator(&headers).await?;
    if !center.store.terminal_delete(&id).await? {
        return Err(ApiErr::not_found(format!("no terminal {id:?} is enrolled")));
    }
    center.forget_config(center.store.revisions().await?.config);
    Ok(StatusCode::NO_CONTENT)
}

/// Groups, each with its policy and how many terminals are in it.
#[utoipa::path(get, path = "/v1/groups", tag = "operators",
    responses((status = 200, body = GroupList), (status = 401, body = ErrorBody)))]
pub async fn list_groups(
    State(center): State<Arc<Center>>,
    headers: HeaderMap,
) -> ApiResult<Json<GroupList>> {
    center.require_operator(&headers).await?;
    let groups = center
        .store
        .groups()
        .await?
        .into_iter()
        .map(|(row, terminals)| {
            let policy = serde_json::from_str(&row.policy).map_err(|err| {
                ApiErr::internal(format!("group {:?} has a corrupt policy: {err}", row.id))
            })?;
            Ok(GroupDoc {
                id: row.id,
                description: row.description,
                policy,
                terminals,
            })
        })
        .collect::<ApiResult<_>>()?;
    Ok(Json(GroupList { groups }))
}

/// Create or replace a group and its policy. Its terminals plan with it from their next check-in.
#[utoipa::path(put, path = "/v1/groups/{id}", tag = "operators",
    params(("id" = String, Path, description = "The group id.")),
    request_body = GroupDoc,
    responses((status = 200, body = GroupDoc), (status = 400, body = ErrorBody), (status = 401, body = ErrorBody)))]
pub async fn put_group(
    State(center): State<Arc<Center>>,
    headers: HeaderMap,
    Path(id): Path<String>,
    body: Body,
) -> ApiResult<Json<GroupDoc>> {
    center.require_operator(&headers).await?;
    let bytes = read_body(body, MAX_JSON_BODY, "the group").await?;
    let group: GroupDoc = parse_json("the group", &bytes)?;
    if group.id != id {
        return Err(ApiErr::bad_request(format!(
            "the group: $.id: {:?} differs from the id in the path {id:?}",
            group.id
        )));
    }
    check_identifier(&id).map_err(|m| ApiErr::bad_request(format!("the group: $.id: {m}")))?;
    if group.policy.tz.is_some() {
        return Err(ApiErr::bad_request(
            "the group: $.policy.tz: a group's policy has no time zone; each terminal reports its own",
        ));
    }
    // Validate the policy the same way a terminal record's is validated.
    let probe = herd_proto::terminal::TerminalDoc {
        id: "policy-check".to_owned(),
        user: None,
        hardware: HardwareDoc {
            kind: "any".to_owned(),
            platform: "any".to_owned(),
            model: None,
        },
        installed: None,
        policy: group.policy.clone(),
    };
    probe
        .validate("the group", &center.catalog().catalog)
        .map_err(|err| {
            ApiErr::invalid(herd_proto::api::codes::BAD_REQUEST, err.to_string(), &err)
        })?;
    center
        .store
        .group_put(GroupRow {
            id: id.clone(),
            description: group.description.clone(),
            policy: serde_json::to_string(&group.policy).expect("policy serialises"),
        })
        .await?;
    center.forget_config(center.store.revisions().await?.config);
    Ok(Json(group))
}

/// Delete a group that no terminal and no rule uses (`unknown` cannot be deleted).
#[utoipa::path(delete, path = "/v1/groups/{id}", tag = "operators",
    params(("id" = String, Path, description = "The group id.")),
    responses((status = 204, description = "Deleted."), (status = 404, body = ErrorBody), (status = 409, body = ErrorBody, description = "`conflict`: still in use")))]
pub async fn delete_group(
    State(center): State<Arc<Center>>,
    headers: HeaderMap,
    Path(id): Path<String>,
) -> ApiResult<StatusCode> {
    center.require_operator(&headers).await?;
    center.store.group_delete(&id).await?;
    center.forget_config(center.store.revisions().await?.config);
    Ok(StatusCode::NO_CONTENT)
}

/// The placement rules, in evaluation order.
#[utoipa::path(get, path = "/v1/placement-rules", tag = "operators",
    responses((status = 200, body = PlacementRules), (status = 401, body = ErrorBody)))]
pub async fn get_rules(
    State(center): State<Arc<Center>>,
    headers: HeaderMap,
) -> ApiResult<Json<PlacementRules>> {
    center.require_operator(&headers).await?;
    let rules = center
        .store
        .rules()
        .await?
        .iter()
        .map(|row| {
            serde_json::from_str(&row.rule).map_err(|err| {
                ApiErr::internal(format!("a stored placement rule is corrupt: {err}"))
            })
        })
        .collect::<ApiResult<_>>()?;
    Ok(Json(PlacementRules { rules }))
}

/// Replace every placement rule at once. They apply to terminals enrolling from now on.
#[utoipa::path(put, path = "/v1/placement-rules", tag = "operators",
    request_body = PlacementRules,
    responses((status = 200, body = PlacementRules), (status = 409, body = ErrorBody, description = "`conflict`: a rule names a missing group"), (status = 422, body = ErrorBody)))]
pub async fn put_rules(
    State(center): State<Arc<Center>>,
    headers: HeaderMap,
    body: Body,
) -> ApiResult<Json<PlacementRules>> {
    center.require_operator(&headers).await?;
    let bytes = read_body(body, MAX_JSON_BODY, "the placement rules").await?;
    let rules: PlacementRules = parse_json("the placement rules", &bytes)?;
    placement::check_rules(&rules.rules).map_err(|problems| ApiErr {
        status: StatusCode::UNPROCESSABLE_ENTITY,
        code: herd_proto::api::codes::BAD_REQUEST,
        message: "the placement rules are refused".to_owned(),
        problems: problems.iter().map(Into::into).collect(),
    })?;
    let rows: Vec<RuleRow> = rules
        .rules
        .iter()
        .map(|rule| RuleRow {
            group: rule.group.clone(),
            rule: serde_json::to_string(rule).expect("rule serialises"),
        })
        .collect();
    center.store.rules_replace(&rows).await?;
    center.forget_config(center.store.revisions().await?.config);
    Ok(Json(rules))
}

/// A new enrolment token: give it to the terminals that should enrol (shown once).
#[utoipa::path(post, path = "/v1/enrolment-tokens", tag = "operators",
    request_body = NewEnrolmentToken,
    responses((status = 201, body = TokenCreated), (status = 401, body = ErrorBody)))]
pub async fn new_enrolment_token(
    State(center): State<Arc<Center>>,
    headers: HeaderMap,
    body: Body,
) -> ApiResult<(StatusCode, Json<TokenCreated>)> {
    center.require_operator(&headers).await?;
    let bytes = read_body(body, MAX_JSON_BODY, "the token request").await?;
    let request: NewEnrolmentToken = parse_json("the token request", &bytes)?;
    let now = unix_now();
    let expires_at = now
        + request
            .ttl_secs
            .unwrap_or(7 * 86_400)
            .min(10 * 365 * 86_400) as i64;
    let token = new_secret();
    center
        .store
        .enrol_token_insert(EnrolTokenRow {
            hash: secret_hash(&token),
            label: request.label,
            uses_left: request.uses.unwrap_or(1),
            created_at: now,
            expires_at,
        })
        .await?;
    Ok((
        StatusCode::CREATED,
        Json(TokenCreated {
            token,
            expires_at: rfc3339(expires_at),
        }),
    ))
}

/// A new API token for an operator or a vendor (shown once).
#[utoipa::path(post, path = "/v1/tokens", tag = "operators",
    request_body = NewApiToken,
    responses((status = 201, body = TokenCreated), (status = 400, body = ErrorBody), (status = 401, body = ErrorBody)))]
pub async fn new_api_token(
    State(center): State<Arc<Center>>,
    headers: HeaderMap,
    body: Body,
) -> ApiResult<(StatusCode, Json<TokenCreated>)> {
    center.require_operator(&headers).await?;
    let bytes = read_body(body, MAX_JSON_BODY, "the token request").await?;
    let request: NewApiToken = parse_json("the token request", &bytes)?;
    let (role, vendor) = match (request.role.as_str(), request.vendor) {
        ("operator", None) => (Role::Operator, None),
        ("operator", Some(_)) => {
            return Err(ApiErr::bad_request(
                "the token request: $.vendor: operator tokens have no vendor",
            ));
        }
        ("vendor", Some(vendor)) => {
            check_identifier(&vendor)
                .map_err(|m| ApiErr::bad_request(format!("the token request: $.vendor: {m}")))?;
            (Role::Vendor, Some(vendor))
        }
        ("vendor", None) => {
            return Err(ApiErr::bad_request(
                "the token request: $.vendor: a vendor token needs the vendor id",
            ));
        }
        (other, _) => {
            return Err(ApiErr::bad_request(format!(
                "the token request: $.role: {other:?} is neither \"operator\" nor \"vendor\""
            )));
        }
    };
    let now = unix_now();
    let expires_at = now
        + request
            .ttl_secs
            .unwrap_or(365 * 86_400)
            .min(10 * 365 * 86_400) as i64;
    let token = new_secret();
    center
        .store
        .api_token_insert(ApiTokenRow {
            hash: secret_hash(&token),
            role,
            vendor,
            label: request.label,
            created_at: now,
            expires_at,
        })
        .await?;
    Ok((
        StatusCode::CREATED,
        Json(TokenCreated {
            token,
            expires_at: rfc3339(expires_at),
        }),
    ))
}
