//! Groups and placement rules: a group's policy is validated the way a terminal record's is
//! (against the current catalog), rules are checked together; every change makes each center
//! process forget its cached terminals, so the next check-in plans with the new policy.

use herd_core::check_identifier;
use herd_proto::api::{GroupDoc, GroupList, PlacementRules};
use herd_proto::terminal::HardwareDoc;
use herd_store::{GroupRow, RuleRow};

use crate::error::{CenterError, CenterResult, ErrorKind};
use crate::{Center, placement};

impl Center {
    /// Groups, each with its policy and how many terminals are in it.
    pub async fn groups(&self) -> CenterResult<GroupList> {
        let groups = self
            .store
            .groups()
            .await?
            .into_iter()
            .map(|(row, terminals)| {
                let policy = serde_json::from_str(&row.policy).map_err(|err| {
                    CenterError::internal(format!("group {:?} has a corrupt policy: {err}", row.id))
                })?;
                Ok(GroupDoc {
                    id: row.id,
                    description: row.description,
                    policy,
                    terminals,
                })
            })
            .collect::<CenterResult<_>>()?;
        Ok(GroupList { groups })
    }

    /// Creates or replaces group `id` (the id in `group` must be the same).
    pub async fn put_group(&self, id: &str, group: GroupDoc) -> CenterResult<GroupDoc> {
        if group.id != id {
            return Err(CenterError::new(
                ErrorKind::DocumentInvalid,
                format!(
                    "the group: $.id: {:?} differs from the id in the path {id:?}",
                    group.id
                ),
            ));
        }
        check_identifier(id)
            .map_err(|m| CenterError::bad_request(format!("the group: $.id: {m}")))?;
        if group.policy.tz.is_some() {
            return Err(CenterError::new(
                ErrorKind::DocumentInvalid,
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
            .validate("the group", &self.catalog().catalog)
            .map_err(|err| {
                CenterError::invalid(ErrorKind::DocumentInvalid, err.to_string(), &err)
            })?;
        self.store
            .group_put(GroupRow {
                id: id.to_owned(),
                description: group.description.clone(),
                policy: serde_json::to_string(&group.policy).expect("policy serialises"),
            })
            .await?;
        // Its terminals take the new policy at their next check-in; none is read again.
        self.reload_groups().await?;
        Ok(group)
    }

    /// Deletes a group that no terminal and no rule uses.
    pub async fn delete_group(&self, id: &str) -> CenterResult<()> {
        self.store.group_delete(id).await?;
        self.reload_groups().await?;
        Ok(())
    }

    /// The placement rules, in evaluation order.
    pub async fn rules(&self) -> CenterResult<PlacementRules> {
        let rules = self
            .store
            .rules()
            .await?
            .iter()
            .map(|row| {
                serde_json::from_str(&row.rule).map_err(|err| {
                    CenterError::internal(format!("a stored placement rule is corrupt: {err}"))
                })
            })
            .collect::<CenterResult<_>>()?;
        Ok(PlacementRules { rules })
    }

    /// Replaces every placement rule at once.
    pub async fn put_rules(&self, rules: PlacementRules) -> CenterResult<PlacementRules> {
        placement::check_rules(&rules.rules).map_err(|problems| CenterError {
            kind: ErrorKind::DocumentInvalid,
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
        // Rules place terminals at enrolment, which reads them from the store: nothing cached
        // depends on them.
        self.store.rules_replace(&rows).await?;
        Ok(rules)
    }
}
