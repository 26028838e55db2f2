//! Ctrl-C: the first press asks the command to stop tidily (recv removes partial files,
//! send aborts the message in progress with `#`), exit code 130; a second press ends the
//! process at once.

use tokio::sync::watch;

/// The exit code after Ctrl-C (128 + SIGINT), as shells report it.
pub(crate) const EXIT_CODE: u8 = 130;

/// Whether Ctrl-C was pressed. Cheap to clone.
#[derive(Clone)]
pub(crate) struct Interrupt(watch::Receiver<bool>);

impl Interrupt {
    /// Starts listening for Ctrl-C; it is caught from the moment this returns.
    pub(crate) async fn listen() -> Self {
        let (pressed, receiver) = watch::channel(false);
        let (ready, listening) = tokio::sync::oneshot::channel();
        tokio::spawn(async move {
            // The handler is installed on the first poll: poll once before saying so.
            let mut first = std::pin::pin!(tokio::signal::ctrl_c());
            let early = futures::poll!(first.as_mut());
            let _ = ready.send(());
            if early.is_pending() && first.await.is_err() {
                // No signal handling here: Ctrl-C keeps its default effect.
                return;
            }
            let _ = pressed.send(true);
            if tokio::signal::ctrl_c().await.is_ok() {
                std::process::exit(i32::from(EXIT_CODE));
            }
        });
        let _ = listening.await;
        Self(receiver)
    }

    /// Waits until Ctrl-C is pressed (forever if it cannot be).
    pub(crate) async fn pressed(&mut self) {
        if self.0.wait_for(|pressed| *pressed).await.is_err() {
            std::future::pending::<()>().await;
        }
    }
}
