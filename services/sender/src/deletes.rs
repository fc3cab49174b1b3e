//! Coalesced deletes: finished jobs hand their receipts to one task, which deletes them with
//! `delete_batch`, so a busy sender pays one queue request for up to 10 finished jobs.
//!
//! A batch goes out when 10 receipts are pending, or when the first pending one has waited the
//! linger (`SENDER_DELETE_LINGER`). Each job awaits the result for its own receipt, so a job
//! still counts as deleted only once the queue said so, and its caller keeps retrying
//! transient failures as before. At shutdown, [`DeleteBatcher::flush_now`] sends whatever is
//! pending at once and stops lingering; the task ends once every handle is dropped and the last
//! answer is given.

use message_queue::{MAX_RECEIVE_MESSAGES, MessageQueue, QueueError, Receipt};
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::{mpsc, oneshot, watch};
use tokio::task::{JoinHandle, JoinSet};
use tokio::time::Instant;

/// Most receipts in one `delete_batch` call (a single SQS request).
const BATCH: usize = MAX_RECEIVE_MESSAGES as usize;

/// A handle for jobs to delete their message through the batching task.
#[derive(Clone)]
pub struct DeleteBatcher {
    requests: mpsc::UnboundedSender<Request>,
    /// True once deletes should no longer linger.
    hurry: Arc<watch::Sender<bool>>,
}

struct Request {
    receipt: Receipt,
    /// When the job asked; the linger of a batch counts from its oldest request.
    since: Instant,
    answer: oneshot::Sender<Result<(), QueueError>>,
}

impl DeleteBatcher {
    /// Starts the batching task. It ends once every `DeleteBatcher` clone is dropped and the
    /// pending deletes are answered; await the handle to know they were.
    pub fn start(queue: Arc<dyn MessageQueue>, linger: Duration) -> (Self, JoinHandle<()>) {
        let (requests, incoming) = mpsc::unbounded_channel();
        let (hurry, hurried) = watch::channel(false);
        let task = tokio::spawn(run(queue, linger, incoming, hurried));
        let hurry = Arc::new(hurry);
        (Self { requests, hurry }, task)
    }

    /// Sends the pending deletes now, and later ones without lingering (shutdown: nothing
    /// should wait for company any more).
    pub fn flush_now(&self) {
        self.hurry.send_replace(true);
    }

    /// Deletes the message, together with whatever other jobs finish around the same time.
    /// The result is this receipt's own, as `MessageQueue::delete` would give it.
    pub async fn delete(&self, receipt: &Receipt) -> Result<(), QueueError> {
        let (answer, answered) = oneshot::channel();
        let request = Request {
            receipt: receipt.clone(),
            since: Instant::now(),
            answer,
        };
        if self.requests.send(request).is_err() {
            return Err(QueueError::Internal(
                "the delete batcher has stopped; the message was not deleted".into(),
            ));
        }
        answered.await.unwrap_or_else(|_| {
            Err(QueueError::Internal(
                "the delete batcher stopped before answering; the message may not be deleted"
                    .into(),
            ))
        })
    }
}

async fn run(
    queue: Arc<dyn MessageQueue>,
    linger: Duration,
    mut incoming: mpsc::UnboundedReceiver<Request>,
    mut hurried: watch::Receiver<bool>,
) {
    // Batches go out as separate tasks, so a slow call does not hold up the next batch.
    let mut in_flight = JoinSet::new();
    let mut open = true;
    while open {
        while in_flight.try_join_next().is_some() {}
        let Some(first) = incoming.recv().await else {
            break;
        };
        let due = first.since + linger;
        let mut batch = vec![first];
        while batch.len() < BATCH {
            tokio::select! {
                // Requests already waiting join the batch even when the linger is over.
                biased;
                request = incoming.recv() => match request {
                    Some(request) => batch.push(request),
                    None => {
                        open = false;
                        break;
                    }
                },
                () = tokio::time::sleep_until(due) => break,
                // Err only if every handle is gone, and then `incoming` has closed too.
                _ = hurried.wait_for(|hurry| *hurry) => break,
            }
        }
        in_flight.spawn(send(queue.clone(), batch));
    }
    while in_flight.join_next().await.is_some() {}
}

/// One `delete_batch` call; answers every request in it.
async fn send(queue: Arc<dyn MessageQueue>, batch: Vec<Request>) {
    let receipts: Vec<Receipt> = batch.iter().map(|r| r.receipt.clone()).collect();
    let mut results = queue.delete_batch(&receipts).await.into_iter();
    for request in batch {
        let result = results.next().unwrap_or_else(|| {
            Err(QueueError::Internal(
                "delete_batch returned fewer results than receipts".into(),
            ))
        });
        // The job may be gone (aborted at shutdown); its message was settled all the same.
        let _ = request.answer.send(result);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use message_queue::OutgoingMessage;

    #[tokio::test]
    async fn each_job_gets_its_own_result_and_flushing_does_not_wait_for_the_linger() {
        let queue = message_queue::open("sqlite::memory:")
            .await
            .expect("open queue");
        let messages = (0..3).map(|i| OutgoingMessage::new(format!("m{i}")));
        queue.send_batch(messages.collect()).await.expect("send");
        let got = queue
            .receive(10, Duration::ZERO, Duration::from_secs(30))
            .await
            .expect("receive");
        assert_eq!(got.len(), 3);
        // A linger no test waits for: only flush_now sends the batch.
        let (deletes, task) = DeleteBatcher::start(queue.clone(), Duration::from_secs(3600));
        queue
            .delete(&got[1].receipt)
            .await
            .expect("delete one directly");
        let jobs: Vec<_> = got
            .iter()
            .map(|d| {
                let deletes = deletes.clone();
                let receipt = d.receipt.clone();
                tokio::spawn(async move { deletes.delete(&receipt).await })
            })
            .collect();
        tokio::time::sleep(Duration::from_millis(100)).await;
        assert!(jobs.iter().all(|j| !j.is_finished()), "lingering");
        deletes.flush_now();
        let mut results = Vec::new();
        for job in jobs {
            let answered = tokio::time::timeout(Duration::from_secs(5), job).await;
            results.push(answered.expect("answered after flush_now").expect("job"));
        }
        assert!(results[0].is_ok(), "{results:?}");
        assert!(
            matches!(results[1], Err(QueueError::StaleReceipt(_))),
            "{results:?}"
        );
        assert!(results[2].is_ok(), "{results:?}");
        assert_eq!(queue.approximate_depth().await.expect("depth"), 0);
        drop(deletes);
        tokio::time::timeout(Duration::from_secs(5), task)
            .await
            .expect("the task ends with its last handle")
            .expect("batcher task");
    }
}
