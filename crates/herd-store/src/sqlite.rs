//! Placeholder SqliteStore while the real backend is written: every call reports it is not ready.
use async_trait::async_trait;

use crate::*;

#[derive(Debug)]
pub struct SqliteStore {}

impl SqliteStore {
    pub async fn open(_path: &std::path::Path) -> Result<Self, StoreError> {
        Ok(Self {})
    }
}

#[async_trait]
impl Store for SqliteStore {
    fn backend(&self) -> Backend {
        Backend::Sqlite
    }
    async fn ca_get_or_insert(&self, _candidate: CaMaterial) -> Result<CaMaterial, StoreError> {
        Err(StoreError::NotFound("not implemented yet".into()).into())
    }
    async fn revisions(&self) -> Result<Revisions, StoreError> {
        Err(StoreError::NotFound("not implemented yet".into()).into())
    }
    async fn feeds(&self) -> Result<(u64, Vec<StoredFeed>), StoreError> {
        Err(StoreError::NotFound("not implemented yet".into()).into())
    }
    async fn publish_feed(
        &self,
        _feed: StoredFeed,
        _check: &(dyn Fn(&[StoredFeed]) -> Result<(), String> + Send + Sync),
    ) -> Result<Result<PublishOutcome, String>, StoreError> {
        Err(StoreError::NotFound("not implemented yet".into()).into())
    }
    async fn package_put(&self, _package: PackageRow) -> Result<bool, StoreError> {
        Err(StoreError::NotFound("not implemented yet".into()).into())
    }
    async fn package_get(&self, _sha256: &str) -> Result<Option<PackageRow>, StoreError> {
        Err(StoreError::NotFound("not implemented yet".into()).into())
    }
    async fn api_token_insert(&self, _token: ApiTokenRow) -> Result<(), StoreError> {
        Err(StoreError::NotFound("not implemented yet".into()).into())
    }
    async fn api_token_find(&self, _hash: &str) -> Result<Option<ApiTokenRow>, StoreError> {
        Err(StoreError::NotFound("not implemented yet".into()).into())
    }
    async fn api_tokens_count(&self) -> Result<u64, StoreError> {
        Err(StoreError::NotFound("not implemented yet".into()).into())
    }
    async fn enrol_token_insert(&self, _token: EnrolTokenRow) -> Result<(), StoreError> {
        Err(StoreError::NotFound("not implemented yet".into()).into())
    }
    async fn enrol(
        &self,
        _token_hash: &str,
        _now: i64,
        _terminal: NewTerminal,
    ) -> Result<TerminalRow, EnrolError> {
        Err(StoreError::NotFound("not implemented yet".into()).into())
    }
    async fn terminal(&self, _id: &str) -> Result<Option<TerminalRow>, StoreError> {
        Err(StoreError::NotFound("not implemented yet".into()).into())
    }
    async fn terminals(&self, _query: &TerminalQuery) -> Result<Vec<TerminalRow>, StoreError> {
        Err(StoreError::NotFound("not implemented yet".into()).into())
    }
    async fn terminal_delete(&self, _id: &str) -> Result<bool, StoreError> {
        Err(StoreError::NotFound("not implemented yet".into()).into())
    }
    async fn record_checkins(&self, _batch: &[CheckinWrite]) -> Result<(), StoreError> {
        Err(StoreError::NotFound("not implemented yet".into()).into())
    }
    async fn addresses(&self, _terminal: &str) -> Result<Vec<AddressRow>, StoreError> {
        Err(StoreError::NotFound("not implemented yet".into()).into())
    }
    async fn groups(&self) -> Result<Vec<(GroupRow, u64)>, StoreError> {
        Err(StoreError::NotFound("not implemented yet".into()).into())
    }
    async fn group_put(&self, _group: GroupRow) -> Result<(), StoreError> {
        Err(StoreError::NotFound("not implemented yet".into()).into())
    }
    async fn group_delete(&self, _id: &str) -> Result<(), StoreError> {
        Err(StoreError::NotFound("not implemented yet".into()).into())
    }
    async fn rules(&self) -> Result<Vec<RuleRow>, StoreError> {
        Err(StoreError::NotFound("not implemented yet".into()).into())
    }
    async fn rules_replace(&self, _rules: &[RuleRow]) -> Result<(), StoreError> {
        Err(StoreError::NotFound("not implemented yet".into()).into())
    }
    async fn events_append(&self, _events: &[EventRow]) -> Result<AppendOutcome, StoreError> {
        Err(StoreError::NotFound("not implemented yet".into()).into())
    }
    async fn events(
        &self,
        _terminal: Option<&str>,
        _after_seq: u64,
        _limit: u32,
    ) -> Result<Vec<EventRow>, StoreError> {
        Err(StoreError::NotFound("not implemented yet".into()).into())
    }
}
