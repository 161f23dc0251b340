//! A tokio runtime whose one thread lives in a network namespace, so that the tests' API
//! requests reach a server listening on that namespace's loopback.

use std::future::Future;

/// A tokio runtime whose one thread lives in a network namespace: every socket its tasks
/// open is in that namespace.
pub(super) struct NsRuntime {
    handle: tokio::runtime::Handle,
    quit: Option<tokio::sync::oneshot::Sender<()>>,
    thread: Option<std::thread::JoinHandle<()>>,
}

impl NsRuntime {
    pub(super) fn start(netns: &str) -> Self {
        let path = format!("/run/netns/{netns}");
        let (tx, rx) = std::sync::mpsc::channel();
        let (quit, quit_rx) = tokio::sync::oneshot::channel::<()>();
        let thread = std::thread::Builder::new()
            .name("kubeapi-client".into())
            .spawn(move || {
                super::super::enter(&path);
                let rt = tokio::runtime::Builder::new_current_thread()
                    .enable_all()
                    .build()
                    .expect("a runtime for the API client");
                tx.send(rt.handle().clone())
                    .expect("handing over the runtime");
                rt.block_on(async { quit_rx.await.unwrap_or_default() });
            })
            .expect("spawning the API client thread");
        let handle = rx.recv().expect("the runtime's handle");
        Self {
            handle,
            quit: Some(quit),
            thread: Some(thread),
        }
    }

    /// Runs `fut` to its end on the runtime's thread; a panic in it is this thread's.
    pub(super) fn block_on<T: Send + 'static>(
        &self,
        fut: impl Future<Output = T> + Send + 'static,
    ) -> T {
        let (tx, rx) = std::sync::mpsc::channel();
        let task = self.handle.spawn(fut);
        self.handle.spawn(async move {
            let _ = tx.send(task.await);
        });
        match rx.recv().expect("the API client's runtime is running") {
            Ok(v) => v,
            Err(e) if e.is_panic() => std::panic::resume_unwind(e.into_panic()),
            Err(e) => panic!("the API client's task failed: {e}"),
        }
    }
}

impl Drop for NsRuntime {
    fn drop(&mut self) {
        if let Some(q) = self.quit.take() {
            let _ = q.send(());
        }
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}
