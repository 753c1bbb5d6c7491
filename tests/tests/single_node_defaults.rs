//! `kv-server` with no flags at all is a working single-node cluster (the
//! seed's curl session).
//!
//! It binds the default ports 12379 and 12380, so it lives in a test binary
//! of its own: cargo runs test binaries one after another, and no other test
//! here uses those ports.

use std::net::SocketAddr;
use std::process::{Command, Stdio};
use std::time::Duration;

use cluster_tests::binary::kv_server_bin;
use cluster_tests::client::Client;
use cluster_tests::{run_test, wait_until};

/// Kills the child on drop (on panic too).
struct Killer(std::process::Child);

impl Drop for Killer {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

#[test]
fn no_flags_starts_a_working_single_node_cluster() {
    run_test("no_flags", Duration::from_secs(60), |dir| async move {
        let log = std::fs::File::create(dir.join("node-1.log")).unwrap();
        let child = Command::new(kv_server_bin())
            .current_dir(&dir)
            .stdin(Stdio::null())
            .stdout(log.try_clone().unwrap())
            .stderr(log)
            .spawn()
            .expect("starting kv-server");
        let mut node = Killer(child);
        let client = Client::new(SocketAddr::from(([127, 0, 0, 1], 12380)))
            .with_timeout(Duration::from_secs(5));

        wait_until(
            "the node to see itself as leader",
            Duration::from_secs(20),
            || async {
                match client.health().await {
                    Ok(r) if r.status == 200 => Ok(()),
                    Ok(r) => Err(r.to_string()),
                    Err(e) => Err(e.to_string()),
                }
            },
        )
        .await;

        // curl -L http://127.0.0.1:12380/my-key -XPUT -d hello
        let put = client.request("PUT", "/my-key", b"hello").await.unwrap();
        assert_eq!(put.status, 204, "{put}");
        // curl -L http://127.0.0.1:12380/my-key
        let get = client.request("GET", "/my-key", b"").await.unwrap();
        assert_eq!((get.status, get.text().as_str()), (200, "hello"), "{get}");
        // The same key under /keys/.
        let get = client.get("my-key").await.unwrap();
        assert_eq!(get.text(), "hello");

        assert!(
            dir.join("kv-data/node-1/wal").is_dir(),
            "the default data directory ./kv-data/node-1 is in the working directory"
        );

        // SIGTERM: a graceful exit with status 0.
        let pid = libc::pid_t::try_from(node.0.id()).unwrap();
        // SAFETY: our own unreaped child.
        assert_eq!(unsafe { libc::kill(pid, libc::SIGTERM) }, 0);
        let status = wait_until("exit after SIGTERM", Duration::from_secs(20), || {
            let r = node
                .0
                .try_wait()
                .map_err(|e| e.to_string())
                .and_then(|s| s.ok_or_else(|| "running".to_owned()));
            async move { r }
        })
        .await;
        assert!(status.success(), "exit status after SIGTERM: {status}");
    });
}
