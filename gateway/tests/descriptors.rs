//! Out of file descriptors, the gateway refuses new sockets cleanly, each with an HTTP `503`
//! before the upgrade, keeps serving the open ones, and accepts again once some close.
//! `matchgate up` runs as a child process with a small open-file limit (`ulimit -n`), so the
//! exhaustion is real and bounded.

use std::process::Stdio;
use std::time::Duration;

use futures_util::{SinkExt, StreamExt};
use tokio_tungstenite::tungstenite::{self, Message};

/// Small enough to exhaust with a few dozen sockets, large enough for the runtime's own files.
const OPEN_FILE_LIMIT: u32 = 64;

async fn ping(
    socket: &mut tokio_tungstenite::WebSocketStream<tokio_tungstenite::MaybeTlsStream<tokio::net::TcpStream>>,
) -> bool {
    if socket.send(Message::text(r#"{"action":"ping"}"#)).await.is_err() {
        return false;
    }
    matches!(tokio::time::timeout(Duration::from_secs(10), socket.next()).await, Ok(Some(Ok(Message::Text(t)))) if t.contains("Pong"))
}

#[tokio::test]
async fn without_descriptors_new_sockets_are_refused_and_open_ones_carry_on() -> anyhow::Result<()> {
    let port = std::net::TcpListener::bind("127.0.0.1:0")?.local_addr()?.port();
    let exe = env!("CARGO_BIN_EXE_matchgate");
    let mut child = tokio::process::Command::new("sh")
        .arg("-c")
        .arg(format!("ulimit -n {OPEN_FILE_LIMIT} && exec \"$0\" up --port {port} --auth none"))
        .arg(exe)
        .env("RUST_LOG", "error")
        .stdout(Stdio::null())
        .kill_on_drop(true)
        .spawn()?;
    // Wait for the stack.
    let url = |n: usize| format!("ws://127.0.0.1:{port}/local?playerId=p{n}");
    let mut first = None;
    for _ in 0..200 {
        if let Ok((s, _)) = tokio_tungstenite::connect_async(url(0)).await {
            first = Some(s);
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let mut open = vec![first.expect("the stack starts")];
    // Open sockets until the gateway runs out of descriptors and starts refusing.
    let mut refused = 0;
    for n in 1..(OPEN_FILE_LIMIT as usize * 2) {
        match tokio::time::timeout(Duration::from_secs(5), tokio_tungstenite::connect_async(url(n))).await {
            Ok(Ok((s, _))) => open.push(s),
            Ok(Err(tungstenite::Error::Http(response))) => {
                assert_eq!(response.status(), 503, "a refused socket is answered 503 before the upgrade");
                refused += 1;
            }
            Ok(Err(e)) => panic!("socket {n} was refused without an HTTP status: {e}"),
            Err(_) => panic!("socket {n} was left hanging instead of refused"),
        }
    }
    assert!(refused > 0, "with {OPEN_FILE_LIMIT} descriptors some of {} sockets are refused", OPEN_FILE_LIMIT * 2);
    assert!(open.len() > 1, "connections were accepted before the limit");
    // Every connection that was accepted still works.
    for socket in &mut open {
        assert!(ping(socket).await, "an open connection keeps working");
    }
    // And once some close, new ones are accepted again.
    let closed = open.len() / 2;
    for mut socket in open.drain(..closed) {
        let _ = socket.close(None).await;
    }
    let mut reconnected = false;
    for _ in 0..100 {
        if let Ok(Ok((mut s, _))) =
            tokio::time::timeout(Duration::from_secs(5), tokio_tungstenite::connect_async(url(999))).await
            && ping(&mut s).await
        {
            reconnected = true;
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert!(reconnected, "freed descriptors are used again");
    child.kill().await.ok();
    Ok(())
}
