//! Work that runs beside the requests: every task is tracked, so that shutdown can wait for
//! it, and one token tells the loops to stop. `tokio::spawn` is a disallowed method: a task
//! started any other way would outlive the process's shutdown unseen.

use std::future::Future;
use std::time::Duration;

use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

/// The process's background tasks and their stop signal. Cheap to clone: clones share both.
#[derive(Debug, Clone, Default)]
pub struct Background {
    tasks: TaskTracker,
    stop: CancellationToken,
}

impl Background {
    /// Work that ends on its own (an audit entry written after its answer, a writer that
    /// drains its queue once `stopping` fires): shutdown waits for it.
    pub fn spawn<F>(&self, work: F)
    where
        F: Future<Output = ()> + Send + 'static,
    {
        self.tasks.spawn(work);
    }

    /// A loop that would run for as long as the process does: it is dropped where it waits
    /// when shutdown begins.
    pub fn spawn_loop<F>(&self, work: F)
    where
        F: Future<Output = ()> + Send + 'static,
    {
        let stop = self.stop.clone();
        self.tasks.spawn(async move {
            tokio::select! {
                () = stop.cancelled() => {}
                () = work => {}
            }
        });
    }

    /// Fires when shutdown begins: a writer closes its queue, writes what it holds and ends.
    pub fn stopping(&self) -> CancellationToken {
        self.stop.clone()
    }

    /// Tells the loops to stop and the writers to drain, without waiting for them.
    pub fn stop(&self) {
        self.stop.cancel();
    }

    /// Stops the loops, then waits (up to `grace`) for every task; false if some did not end.
    pub async fn finish(&self, grace: Duration) -> bool {
        self.stop();
        self.tasks.close();
        tokio::time::timeout(grace, self.tasks.wait()).await.is_ok()
    }
}

/// A writer's queue: what [`next_or_drain`] reads.
pub(crate) trait Queue<T>: Send {
    fn recv(&mut self) -> impl Future<Output = Option<T>> + Send;
    fn close(&mut self);
}

impl<T: Send> Queue<T> for tokio::sync::mpsc::Receiver<T> {
    fn recv(&mut self) -> impl Future<Output = Option<T>> + Send {
        tokio::sync::mpsc::Receiver::recv(self)
    }

    fn close(&mut self) {
        tokio::sync::mpsc::Receiver::close(self);
    }
}

impl<T: Send> Queue<T> for tokio::sync::mpsc::UnboundedReceiver<T> {
    fn recv(&mut self) -> impl Future<Output = Option<T>> + Send {
        tokio::sync::mpsc::UnboundedReceiver::recv(self)
    }

    fn close(&mut self) {
        tokio::sync::mpsc::UnboundedReceiver::close(self);
    }
}

/// A writer's next message. Once `stopping` fires the queue takes nothing more, what it holds
/// still comes out, and then `None` ends the writer.
pub(crate) async fn next_or_drain<T, Q: Queue<T>>(
    queue: &mut Q,
    stopping: &CancellationToken,
) -> Option<T> {
    tokio::select! {
        biased;
        message = queue.recv() => message,
        () = stopping.cancelled() => {
            queue.close();
            queue.recv().await
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn shutdown_stops_the_loops_and_waits_for_the_rest() {
        let background = Background::default();
        background.spawn_loop(std::future::pending());
        let (done, finished) = tokio::sync::oneshot::channel();
        let stopping = background.stopping();
        background.spawn(async move {
            stopping.cancelled().await;
            tokio::time::sleep(Duration::from_millis(20)).await;
            let _ = done.send(());
        });
        assert!(background.finish(Duration::from_secs(5)).await);
        assert!(
            finished.await.is_ok(),
            "finish returned before the drain ended"
        );

        let stuck = Background::default();
        stuck.spawn(std::future::pending());
        assert!(!stuck.finish(Duration::from_millis(50)).await);
    }
}
