//! Embedding peergos-core: sign up, store a file, read it back, list.
//! Talks to a daemon if PEERGOS_SERVER is set, else to a server in this
//! process. Run: `cargo run -p peergos-core --example embed`.
use std::sync::Arc;

use peergos_core::{HttpNetwork, InProcess, NetworkAccess, UserContext};

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    let net: Arc<dyn NetworkAccess> = match std::env::var("PEERGOS_SERVER") {
        Ok(url) => Arc::new(HttpNetwork::new(&url)?),
        Err(_) => {
            let dir = tempfile::tempdir()?.keep();
            let config = peergos_server::Config::new(dir);
            Arc::new(InProcess::new(peergos_server::Server::open(config).await?))
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
