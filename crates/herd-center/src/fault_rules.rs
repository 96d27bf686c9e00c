//! The fault database (SPEC §3.3.2–3, seed 002 S14–S15): rules that recognise a fault by
//! program, version range and patterns on frames, exit codes, signals and definition-file
//! excerpts, and name its cause and remedy. Stored as validated documents; matched by
//! `faults::decide` in id order.

use herd_proto::fault::{FaultRule, FaultRuleList};
use herd_store::FaultRuleRow;

use crate::Center;
use crate::error::{CenterError, CenterResult, ErrorKind};
use crate::faults::parse_stored;

impl Center {
    /// The rules, in the order they are tried (by id).
    pub async fn fault_rules(&self) -> CenterResult<FaultRuleList> {
        Ok(FaultRuleList {
            rules: self.fault_rule_docs().await?,
        })
    }

    pub(crate) async fn fault_rule_docs(&self) -> CenterResult<Vec<FaultRule>> {
        self.store
            .fault_rules()
            .await?
            .iter()
            .map(|row| parse_stored(&row.doc, "rule"))
            .collect()
    }

    /// Adds or replaces rule `id` (the id in `rule` must be the same).
    pub async fn put_fault_rule(&self, id: &str, rule: FaultRule) -> CenterResult<FaultRule> {
        if rule.id != id {
            return Err(CenterError::new(
                ErrorKind::DocumentInvalid,
                format!(
                    "the fault rule: $.id: {:?} differs from the id in the path {id:?}",
                    rule.id
                ),
            ));
        }
        rule.validate("the fault rule").map_err(|err| {
            CenterError::invalid(ErrorKind::DocumentInvalid, err.to_string(), &err)
        })?;
        self.store
            .fault_rule_put(&FaultRuleRow {
                id: id.to_owned(),
                doc: serde_json::to_string(&rule).expect("a rule serialises"),
            })
            .await?;
        Ok(rule)
    }

    pub async fn delete_fault_rule(&self, id: &str) -> CenterResult<()> {
        if self.store.fault_rule_delete(id).await? {
            Ok(())
        } else {
            Err(CenterError::not_found(format!("no fault rule {id:?}")))
        }
    }
}
