//! The user's request to stop (Ctrl-C), passed down to every build the way
//! mini-redis passes its `Shutdown`: whoever holds a [`Shutdown`] can ask
//! whether stopping was requested, or wait for it inside a `select!`.

use tokio::sync::watch;

/// Requests the shutdown that every clone of the paired [`Shutdown`] sees.
pub struct ShutdownTrigger(watch::Sender<bool>);

impl ShutdownTrigger {
    /// Asks every running build to stop.
    pub fn request(&self) {
        self.0.send_replace(true);
    }
}

/// The receiving side: cheap to clone, one per task.
#[derive(Clone, Debug)]
pub struct Shutdown(watch::Receiver<bool>);

impl Shutdown {
    /// A trigger and the signal it sets.
    pub fn new() -> (ShutdownTrigger, Shutdown) {
        let (tx, rx) = watch::channel(false);
        (ShutdownTrigger(tx), Shutdown(rx))
    }

    /// A signal that is never set (benchmarks, tests).
    pub fn never() -> Shutdown {
        Shutdown::new().1
    }

    /// Whether stopping was requested.
    pub fn is_requested(&self) -> bool {
        *self.0.borrow()
    }

    /// Resolves once stopping is requested; never, when the trigger is
    /// gone without a request.
    pub async fn requested(&mut self) {
        if self.0.wait_for(|stop| *stop).await.is_err() {
            std::future::pending::<()>().await;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn every_clone_sees_the_request_and_never_fires_alone() {
        let (trigger, shutdown) = Shutdown::new();
        let mut a = shutdown.clone();
        let b = shutdown.clone();
        assert!(!b.is_requested());
        let waiting = tokio::spawn(async move { a.requested().await });
        trigger.request();
        waiting.await.unwrap();
        assert!(b.is_requested());

        let mut never = Shutdown::never();
        assert!(!never.is_requested());
        tokio::select! {
            biased;
            _ = never.requested() => panic!("a signal without a trigger fired"),
            _ = std::future::ready(()) => {}
        }
    }
}
