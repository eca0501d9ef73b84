//! A rendezvous node inside an application's own swarm: rdht's server
//! behaviour beside the application's behaviours. It stores what quorum
//! members register (each record checked against its quorum's key on
//! the verification threads the builder starts) and answers discovers,
//! rdht's own and standard `/rendezvous/1.0.0` ones:
//!
//! ```text
//! cargo run --release -p node --example server -- /ip4/127.0.0.1/tcp/4001 [bootstrap address ending /p2p/<id>]
//! ```

use libp2p::futures::StreamExt;
use libp2p::swarm::{NetworkBehaviour, SwarmEvent};
use libp2p::{noise, tcp, yamux};
use node::rendezvous;

/// The application's behaviours, with the rendezvous role among them.
#[derive(NetworkBehaviour)]
struct App {
    rdht: rendezvous::Behaviour,
}

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    let mut args = std::env::args().skip(1);
    let Some(listen) = args.next() else {
        return Err("usage: server <listen address> [bootstrap address ending /p2p/<id>]".into());
    };
    let keypair = libp2p::identity::Keypair::generate_ed25519();
    let mut builder = rendezvous::Builder::new(keypair.public());
    if let Some(bootstrap) = args.next() {
        let (peer, addr) = node::behaviour::split_p2p(&bootstrap.parse()?)
            .ok_or("the bootstrap address must end with /p2p/<id>")?;
        builder = builder.bootstrap(peer, vec![addr]);
    }
    let server = builder.build()?;
    let mut swarm = libp2p::SwarmBuilder::with_existing_identity(keypair)
        .with_tokio()
        .with_tcp(
            tcp::Config::default(),
            noise::Config::new,
            yamux::Config::default,
        )?
        .with_behaviour(|_| App { rdht: server })?
        .build();
    swarm.listen_on(listen.parse()?)?;
    let me = *swarm.local_peer_id();
    loop {
        match swarm.select_next_some().await {
            SwarmEvent::NewListenAddr { address, .. } => {
                println!("listening on {address}/p2p/{me}")
            }
            SwarmEvent::Behaviour(AppEvent::Rdht(rendezvous::Event::ListingChanged {
                peer,
                listed,
            })) => println!("{peer} listed: {listed}"),
            SwarmEvent::Behaviour(AppEvent::Rdht(event)) => println!("{event:?}"),
            _ => {}
        }
    }
}
