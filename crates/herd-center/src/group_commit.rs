//! Group commit: writes that arrive while a transaction is being committed wait and go into
//! the next one together, and each is answered once that transaction is committed. The store
//! then sees one transaction (and, on SQLite, one fsync) per batch instead of one per request,
//! and nothing is answered before it is stored. Check-ins and event batches go through one
//! each; on a site, the item each queues for the center rides in the same transaction.

use std::future::Future;
use std::pin::Pin;

use tokio::sync::{mpsc, oneshot};

/// Commits a batch of writes; one result per write, in order.
pub type CommitFn<T, R> =
    Box<dyn FnMut(Vec<T>) -> Pin<Box<dyn Future<Output = Vec<R>> + Send>> + Send>;

struct Pending<T, R> {
    write: T,
    done: oneshot::Sender<R>,
}

/// A group-commit writer of `T`s, each answered with an `R`.
pub struct GroupCommit<T, R> {
    queue: std::sync::Mutex<Option<mpsc::Sender<Pending<T, R>>>>,
    task: std::sync::Mutex<Option<tokio::task::JoinHandle<()>>>,
}

impl<T, R> std::fmt::Debug for GroupCommit<T, R> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("GroupCommit").finish_non_exhaustive()
    }
}

/// Why a write was not committed by the writer.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Closed {
    /// The writer no longer takes writes: the process is shutting down.
    ShuttingDown,
    /// The writer's task ended before it answered (it panicked).
    Stopped,
}

impl<T: Send + 'static, R: Send + 'static> GroupCommit<T, R> {
    /// Starts the writer's task: it commits at most `max_batch` writes at a time with `commit`.
    pub fn start(max_batch: usize, mut commit: CommitFn<T, R>) -> GroupCommit<T, R> {
        let (tx, mut rx) = mpsc::channel::<Pending<T, R>>(max_batch * 8);
        let task = tokio::spawn(async move {
            let mut batch: Vec<Pending<T, R>> = Vec::with_capacity(max_batch);
            while rx.recv_many(&mut batch, max_batch).await > 0 {
                let (writes, answers): (Vec<T>, Vec<oneshot::Sender<R>>) = batch
                    .drain(..)
                    .map(|pending| (pending.write, pending.done))
                    .unzip();
                let results = commit(writes).await;
                debug_assert_eq!(results.len(), answers.len(), "one result per write");
                for (answer, result) in answers.into_iter().zip(results) {
                    let _ = answer.send(result);
                }
            }
        });
        GroupCommit {
            queue: std::sync::Mutex::new(Some(tx)),
            task: std::sync::Mutex::new(Some(task)),
        }
    }

    /// Hands one write to the next transaction and returns its result once committed.
    pub async fn write(&self, write: T) -> Result<R, Closed> {
        let queue = self.queue.lock().expect("writer queue").clone();
        let queue = queue.ok_or(Closed::ShuttingDown)?;
        let (done, answer) = oneshot::channel();
        queue
            .send(Pending { write, done })
            .await
            .map_err(|_| Closed::ShuttingDown)?;
        answer.await.map_err(|_| Closed::Stopped)
    }

    /// Stops taking writes and waits until the queued ones are committed.
    pub async fn close(&self) {
        self.queue.lock().expect("writer queue").take();
        let task = self.task.lock().expect("writer task").take();
        if let Some(task) = task {
            let _ = task.await;
        }
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;
    use std::sync::atomic::{AtomicUsize, Ordering::SeqCst};

    use super::*;

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn concurrent_writes_share_commits_and_each_gets_its_own_answer() {
        let commits = Arc::new(AtomicUsize::new(0));
        let counted = commits.clone();
        let writer: Arc<GroupCommit<u32, u32>> = Arc::new(GroupCommit::start(
            64,
            Box::new(move |writes: Vec<u32>| {
                counted.fetch_add(1, SeqCst);
                Box::pin(async move {
                    tokio::time::sleep(std::time::Duration::from_millis(5)).await;
                    writes.into_iter().map(|w| w * 2).collect()
                })
            }),
        ));
        let mut tasks = tokio::task::JoinSet::new();
        for i in 0..500u32 {
            let writer = writer.clone();
            tasks.spawn(async move { (i, writer.write(i).await) });
        }
        while let Some(joined) = tasks.join_next().await {
            let (i, answer) = joined.unwrap();
            assert_eq!(answer, Ok(i * 2));
        }
        let commits = commits.load(SeqCst);
        assert!(commits < 500, "{commits} commits for 500 concurrent writes");
        writer.close().await;
        assert_eq!(writer.write(1).await, Err(Closed::ShuttingDown));
    }
}
