//! Fault recovery's calls: a terminal's verdicts, and the operators' fault buckets, fault
//! database and replacement table (`herd faults`, `herd fault-rules`, `herd replacements`).

use herd_proto::fault::{
    FaultBucketDetail, FaultBucketList, FaultRule, FaultRuleList, FaultVerdicts, ReplacementEntry,
    ReplacementList,
};
use ureq::http::Method;

use crate::{Client, ClientError, MAX_JSON_ANSWER, Payload, segment};

impl Client {
    /// This terminal's latest fault verdicts (`GET /v1/fault-verdicts`).
    pub fn fault_verdicts(&self) -> Result<FaultVerdicts, ClientError> {
        // This client knows the `held` decision, so it asks for those verdicts too.
        self.get_json("/v1/fault-verdicts", &[("held", "true")], MAX_JSON_ANSWER)
    }

    /// Fault buckets, most recently seen first (`GET /v1/faults`).
    pub fn fault_buckets(&self) -> Result<FaultBucketList, ClientError> {
        self.get_json("/v1/faults", &[], MAX_JSON_ANSWER)
    }

    /// One bucket with its latest faults (`GET /v1/faults/{bucket}`).
    pub fn fault_bucket(&self, bucket: &str) -> Result<FaultBucketDetail, ClientError> {
        self.get_json(
            &format!("/v1/faults/{}", segment(bucket)),
            &[],
            MAX_JSON_ANSWER,
        )
    }

    /// The fault database (`GET /v1/fault-rules`).
    pub fn fault_rules(&self) -> Result<FaultRuleList, ClientError> {
        self.get_json("/v1/fault-rules", &[], MAX_JSON_ANSWER)
    }

    /// Adds or replaces a rule (`PUT /v1/fault-rules/{id}`).
    pub fn put_fault_rule(&self, rule: &FaultRule) -> Result<FaultRule, ClientError> {
        let path = format!("/v1/fault-rules/{}", segment(&rule.id));
        self.send_json(Method::PUT, &path, rule)
    }

    /// Deletes a rule (`DELETE /v1/fault-rules/{id}`).
    pub fn delete_fault_rule(&self, id: &str) -> Result<(), ClientError> {
        self.delete(&format!("/v1/fault-rules/{}", segment(id)))
    }

    /// The replacement table (`GET /v1/replacements`).
    pub fn replacements(&self) -> Result<ReplacementList, ClientError> {
        self.get_json("/v1/replacements", &[], MAX_JSON_ANSWER)
    }

    /// Adds or replaces an entry (`PUT /v1/replacements/{program}/{platform}`).
    pub fn put_replacement(
        &self,
        entry: &ReplacementEntry,
    ) -> Result<ReplacementEntry, ClientError> {
        let path = format!(
            "/v1/replacements/{}/{}",
            segment(&entry.program),
            segment(&entry.platform)
        );
        self.send_json(Method::PUT, &path, entry)
    }

    /// Deletes an entry (`DELETE /v1/replacements/{program}/{platform}`).
    pub fn delete_replacement(&self, program: &str, platform: &str) -> Result<(), ClientError> {
        self.delete(&format!(
            "/v1/replacements/{}/{}",
            segment(program),
            segment(platform)
        ))
    }

    pub(crate) fn delete(&self, path: &str) -> Result<(), ClientError> {
        let response = self.call(Method::DELETE, path, &[], Payload::None, false)?;
        self.drain(response, &format!("DELETE {path}"))
    }
}
