use super::*;
use crate::config::Config;
use crate::store::memory::Memory;
use std::sync::atomic::AtomicBool;

/// A hub over in-memory storage with the default limits, in open mode.
fn test_hub() -> Arc<Hub> {
    let config = Config::default();
    let policy = Arc::new(PolicyCell::new(Policy::build(&config, &[]).expect("policy")));
    let writer = config.storage.writer_options();
    let limits = crate::server::hub_limits(&config);
    let loaded = crate::store::Loaded::load(Box::new(Memory::new())).expect("load");
    Hub::start(limits, Arc::default(), policy, |deliveries| crate::broker::Seams {
        broker: Arc::new(crate::broker::local::LocalBroker::start(loaded, writer, deliveries)),
        presence: Arc::new(crate::broker::presence::LocalPresence),
    })
}

fn peer() -> SocketAddr {
    SocketAddr::from(([127, 0, 0, 1], 9))
}

/// Queues `frame` for every connection of `user` the way a DM's fan-out
/// does (under the users lock); returns how many took it.
fn deliver_to_user(hub: &Hub, user: &str, frame: &Bytes) -> usize {
    let users = lock(&hub.users);
    let limit = hub.limits.outbound_queue_bytes;
    users.get(user).iter().filter(|conn| conn.enqueue(frame.clone(), limit) == Enqueued::Queued).count()
}

#[test]
fn a_frame_queued_for_a_user_while_a_connection_takes_that_name_is_kept() {
    // The rename used to make the new connection visible before moving the
    // old queue into it, replacing whatever a DM had queued meanwhile: that
    // frame was lost although it had been counted as delivered.
    let hub = test_hub();
    let frame = Bytes::from_static(b"dm");
    for round in 0..2000 {
        let name: Arc<str> = Arc::from(format!("alice-{round}"));
        let id = hub.next_conn_id();
        let guest = hub.register(id, Arc::from(format!("guest-{id}")), peer(), Transport::TcpJson);
        guest.enqueue(Bytes::from_static(b"before"), usize::MAX);
        let renamed = AtomicBool::new(false);
        let running = std::sync::Barrier::new(2);
        let delivered = std::thread::scope(|scope| {
            let deliverer = scope.spawn(|| {
                running.wait();
                let mut delivered = 0;
                // Until the rename is over, then once more.
                loop {
                    let done = renamed.load(Ordering::Acquire);
                    delivered += deliver_to_user(&hub, &name, &frame);
                    if done {
                        return delivered;
                    }
                    // Let the renaming thread take the users lock too.
                    for _ in 0..2000 {
                        std::hint::spin_loop();
                    }
                }
            });
            running.wait();
            // A panic inside the rename must still stop the deliverer.
            let rename = || hub.rename(&guest, Arc::clone(&name), Transport::TcpJson);
            let conn = std::panic::catch_unwind(std::panic::AssertUnwindSafe(rename));
            renamed.store(true, Ordering::Release);
            let delivered = deliverer.join().expect("deliverer");
            (conn.unwrap_or_else(|panic| std::panic::resume_unwind(panic)), delivered)
        });
        let (conn, delivered) = delivered;
        let mut frames = vec![Bytes::new(); delivered + 2];
        let queued = conn.peek(&mut frames);
        assert_eq!(queued, delivered + 1, "round {round}: every delivered frame is queued, after the old queue");
        assert_eq!(&frames[0][..], b"before", "round {round}: the old queue comes first");
        hub.unregister(&conn);
    }
}
