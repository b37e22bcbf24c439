//! Embedding a client and a server in one app: sign up, store a file,
//! read it back, list. The client (`peergos-core`) talks to a daemon if
//! PEERGOS_SERVER is set, else to a `Server` in this process, which is
//! itself a `NetworkAccess`. An app that only talks to servers needs
//! `peergos-core` alone. Run: `cargo run -p peergos-server --example embed`.
use std::sync::Arc;

use peergos_core::{HttpNetwork, NetworkAccess, UserContext};

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    let net: Arc<dyn NetworkAccess> = match std::env::var("PEERGOS_SERVER") {
        Ok(url) => Arc::new(HttpNetwork::new(&url)?),
        Err(_) => {
            let dir = tempfile::tempdir()?.keep();
            let config = peergos_server::Config::new(dir);
            peergos_server::Server::open(config).await?
        }
    };
    let name = format!("demo{}", std::process::id());
    let user = UserContext::signup(net, &name, "a long passphrase", None).await?;
    user.fs()
        .write_file("/hello.txt", b"hello, encrypted world")
        .await?;
    let text = user.fs().read("/hello.txt", 0, 1024).await?;
    println!("{}", String::from_utf8_lossy(&text));
    for entry in user.fs().ls("/").await? {
        println!("/{name}/{} ({} bytes)", entry.name, entry.size);
    }
    Ok(())
}
