//! Runs a test Swift cluster for manual poking (curl, swift CLI) until stdin
//! closes, then stops it and removes its dir.
//!
//!     cargo run -p swiftfed-tests --example swift-cluster [name]

use std::io::Read;

use swiftfed_tests::{venv_bin, SwiftCluster, USERS};

fn main() {
    let name = std::env::args().nth(1).unwrap_or_else(|| "manual".into());
    let cluster = SwiftCluster::start(&name).unwrap_or_else(|e| {
        eprintln!("{e}");
        std::process::exit(1)
    });
    println!("proxy:  {}", cluster.proxy_url());
    println!("auth:   {}", cluster.auth_url());
    println!("dir:    {}", cluster.dir().display());
    println!("client: {}", venv_bin("swift").display());
    for (account, user, key, groups) in USERS {
        println!("user:   {account}:{user} / {key}  {groups}");
    }
    println!("running; close stdin (Ctrl-D) to stop");
    let _ = std::io::stdin().read_to_end(&mut Vec::new());
}
