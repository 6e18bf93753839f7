//! CPU work that a request may ask for but must not multiply (AV-4), on a few threads of its
//! own: password and recovery-code checks (argon2id, 19 MiB each) and prompt renders. However
//! many requests arrive, at most `threads` jobs of a kind run at once, and the memory they take
//! stays with those threads (each hasher keeps one argon2 memory, see `core::password`): on the
//! runtime's blocking pool 64 logins ran on 64 threads and took the process to 1.1 GiB. Past
//! the queue or the wait, the answer is 503 with `Retry-After`.

use std::sync::mpsc::{Receiver, SyncSender, TrySendError, sync_channel};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use crate::error::ApiError;

type Job = Box<dyn FnOnce() + Send>;

/// Jobs waiting for a worker; past this many the answer is 503 at once.
const QUEUE: usize = 256;
/// How long a job waits for its answer before the client gets 503.
const WAIT: Duration = Duration::from_secs(2);

#[derive(Debug, Clone)]
pub struct Workers {
    jobs: SyncSender<Job>,
}

impl Workers {
    /// `threads` workers named `portcullis-{name}-N`.
    pub fn start(name: &str, threads: usize) -> Self {
        let (jobs, queue) = sync_channel::<Job>(QUEUE);
        let queue = Arc::new(Mutex::new(queue));
        for n in 0..threads.max(1) {
            let queue = Arc::clone(&queue);
            let spawned = std::thread::Builder::new()
                .name(format!("portcullis-{name}-{n}"))
                .spawn(move || work(&queue));
            if let Err(error) = spawned {
                tracing::error!(%error, name, "cannot start a worker thread");
            }
        }
        Self { jobs }
    }

    /// Runs `work` on a worker and waits for it.
    pub async fn run<T: Send + 'static>(
        &self,
        work: impl FnOnce() -> T + Send + 'static,
    ) -> Result<T, ApiError> {
        let (done, answer) = tokio::sync::oneshot::channel();
        let job: Job = Box::new(move || {
            // A client that already had its 503 costs no work.
            if !done.is_closed() {
                let _ = done.send(work());
            }
        });
        match self.jobs.try_send(job) {
            Ok(()) => {}
            Err(TrySendError::Full(_)) => {
                return Err(ApiError::Unavailable {
                    retry_after_secs: 1,
                });
            }
            Err(TrySendError::Disconnected(_)) => {
                return Err(ApiError::internal(std::io::Error::other(
                    "no worker is running",
                )));
            }
        }
        match tokio::time::timeout(WAIT, answer).await {
            Ok(Ok(value)) => Ok(value),
            Ok(Err(_)) => Err(ApiError::internal(std::io::Error::other("a worker failed"))),
            Err(_) => Err(ApiError::Unavailable {
                retry_after_secs: 1,
            }),
        }
    }
}

fn work(queue: &Mutex<Receiver<Job>>) {
    loop {
        let job = {
            let queue = queue.lock().unwrap_or_else(|p| p.into_inner());
            queue.recv()
        };
        match job {
            Ok(job) => job(),
            Err(_) => return,
        }
    }
}
