//! The `matchgate` binary as an operator runs it, in a child process: what `token` prints, and
//! what `up` does on SIGTERM with clients connected.

use std::process::Stdio;
use std::time::Duration;

use futures_util::{SinkExt, StreamExt};
use tokio::io::{AsyncBufReadExt, BufReader};
use tokio_tungstenite::tungstenite::Message;

/// A guard against a hung test, not a performance bound.
const HANG_GUARD: Duration = Duration::from_secs(60);

const MATCHGATE: &str = env!("CARGO_BIN_EXE_matchgate");

#[test]
fn token_prints_the_token_and_nothing_else_on_stdout() {
    let state = tempfile::tempdir().expect("a temporary directory");
    // First use: the signing key is created (and logged) on the way.
    let output = std::process::Command::new(MATCHGATE)
        .args(["token", "alice", "--state-dir"])
        .arg(state.path())
        .env("RUST_LOG", "info")
        .output()
        .expect("matchgate token runs");
    assert!(output.status.success(), "{output:?}");
    let stdout = String::from_utf8(output.stdout).expect("UTF-8");
    let token = stdout.strip_suffix('\n').expect("one line");
    let segments: Vec<&str> = token.split('.').collect();
    assert_eq!(segments.len(), 3, "a JWT and nothing else: {stdout:?}");
    assert!(
        segments
            .iter()
            .all(|s| !s.is_empty() && s.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')),
        "{stdout:?}"
    );
    assert!(!String::from_utf8_lossy(&output.stderr).is_empty(), "the key's creation is logged, on stderr");
}

#[tokio::test]
async fn sigterm_closes_every_connection_with_1001_and_exits_0() {
    let dir = tempfile::tempdir().expect("a temporary directory");
    // In an empty directory: no infra/template.yaml, the built-in configuration.
    let mut up = tokio::process::Command::new(MATCHGATE)
        .args(["up", "--port", "0", "--auth", "none"])
        .current_dir(dir.path())
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .kill_on_drop(true)
        .spawn()
        .expect("matchgate up starts");
    let mut lines = BufReader::new(up.stdout.take().expect("stdout")).lines();
    let url = tokio::time::timeout(HANG_GUARD, async {
        while let Some(line) = lines.next_line().await.expect("stdout") {
            if let Some(url) = line.trim().strip_prefix("WebSocket API") {
                return url.trim().to_owned();
            }
        }
        panic!("matchgate up printed no WebSocket URL");
    })
    .await
    .expect("matchgate up is ready");

    let mut clients = Vec::new();
    for n in 0..100 {
        let (mut socket, _) = tokio_tungstenite::connect_async(format!("{url}?playerId=p{n}")).await.expect("connects");
        // Answered: the connection is past `$connect` and routed.
        socket.send(Message::text(r#"{"action":"ping"}"#)).await.expect("sends");
        let pong = tokio::time::timeout(HANG_GUARD, socket.next()).await.expect("a pong");
        assert!(matches!(pong, Some(Ok(Message::Text(_)))), "{pong:?}");
        clients.push(socket);
    }

    let pid = up.id().expect("running").to_string();
    let killed = std::process::Command::new("kill").args(["-TERM", &pid]).status().expect("kill runs");
    assert!(killed.success());

    for (n, mut socket) in clients.into_iter().enumerate() {
        let code = tokio::time::timeout(HANG_GUARD, async {
            while let Some(frame) = socket.next().await {
                match frame {
                    Ok(Message::Close(frame)) => return frame.map(|f| u16::from(f.code)),
                    Ok(_) => continue,
                    Err(_) => return None,
                }
            }
            None
        })
        .await
        .expect("closed");
        assert_eq!(code, Some(1001), "client p{n}");
    }
    let status = tokio::time::timeout(HANG_GUARD, up.wait()).await.expect("matchgate up exits").expect("waits");
    assert!(status.success(), "{status:?}");
}
