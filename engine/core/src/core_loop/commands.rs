//! Commands from other threads (the inbox), on the core thread.
//!
//! Each command is applied once, in the order the inbox yields it; the
//! ones that carry an `ack` are acknowledged after they took effect, so
//! `serve`/`unserve` return only once the service is live (or gone) here.

use std::time::Instant;

use net_proto::ServiceId;

use crate::core_loop::{Core, Held, Service};
use crate::handler::Handler;
use crate::inbox::Command;
use crate::trust::Advert;

impl Core {
    pub(crate) fn command(&mut self, now: Instant, cmd: Command) {
        match cmd {
            Command::Call(req) => self.open_call(now, req),
            Command::Respond {
                session,
                call,
                status,
                payload,
            } => self.respond_async(now, (session, call), status, payload),
            Command::Send {
                session,
                call,
                payload,
                flow,
            } => self.queue_send(now, (session, call), payload, &flow),
            Command::Finish { session, call } => {
                if self.handoffs.is_open((session, call)) {
                    self.send_held(now, (session, call), Held::Finish);
                }
            }
            Command::Consumed {
                session,
                call,
                msgs,
                bytes,
            } => {
                if self.ep.consumed(now, session, call, msgs, bytes).is_err() {
                    // The call ended meanwhile: no credit is owed any more.
                    self.stats.credit_reports_late += 1;
                }
            }
            Command::Cancel { session, call } => self.cancel_own(now, (session, call)),
            Command::Released {
                session,
                call,
                service,
                panicked,
            } => self.released(now, (session, call), service, panicked),
            Command::Register {
                service,
                handler,
                max_in_flight,
                advert,
                ack,
            } => {
                self.register(now, service, handler, max_in_flight, advert);
                self.reply(&ack, ());
            }
            Command::Unregister { service, ack } => {
                self.handlers.remove(&service);
                self.ep.unregister_service(service);
                self.trust.set_advert(service, None, now);
                self.reply(&ack, ());
            }
            Command::Stats(tx) => {
                let snapshot = self.snapshot();
                self.reply(&tx, snapshot);
            }
            Command::App(app) => {
                self.app.install(now, app);
                self.issue_app_calls(now);
            }
            Command::Shutdown { deadline } => self.draining = Some(deadline),
            Command::Spawn(fut) => self.spawn_task(fut),
            Command::Announce {
                peer: None,
                payload,
            } => self.announce_all(now, &payload),
            Command::Announce {
                peer: Some(p),
                payload,
            } => {
                if let Some(s) = self.own.session_of(&p) {
                    self.announce_on(now, s, &payload);
                }
            }
        }
    }

    /// Adds an on-core task; past `MAX_TASKS` the future is dropped (whoever
    /// awaits its outcome learns it ended unanswered) and counted.
    fn spawn_task(&mut self, fut: crate::local::CoreFuture) {
        if !self.tasks.spawn(fut) {
            self.stats.tasks_refused += 1;
        }
    }

    fn register(
        &mut self,
        now: Instant,
        service: ServiceId,
        handler: Handler,
        max_in_flight: u32,
        advert: Advert,
    ) {
        self.ep.register_service(service, max_in_flight);
        self.trust.set_advert(service, Some(advert.clone()), now);
        let svc = Service {
            handler,
            name: advert.name.as_str().into(),
            max_in_flight,
        };
        self.handlers.insert(service, svc);
    }

    /// Answers a thread waiting on `tx` (`serve`, `unserve`, `stats`). A
    /// waiter that gave up has already returned its timeout error, so
    /// nobody is left to act: the reply is counted (`replies_unheard`).
    fn reply<T>(&mut self, tx: &std::sync::mpsc::SyncSender<T>, value: T) {
        if tx.try_send(value).is_err() {
            self.stats.replies_unheard += 1;
        }
    }

    fn snapshot(&self) -> crate::CoreStats {
        let mut s = self.stats.clone();
        s.core = self.index;
        s.driver = self.driver.kind().to_string();
        s.io = self.driver.stats();
        s.proto = self.ep.stats().clone();
        s.inbox_wakes = self.inbox.wakes.load(std::sync::atomic::Ordering::Relaxed);
        s.inbox_room_waits = self
            .inbox
            .room_waits
            .load(std::sync::atomic::Ordering::Relaxed);
        s.trust = self.trust.stats.clone();
        s.open_calls = self.ep.call_count() as u64;
        s.tasks = self.tasks.len() as u64;
        s
    }
}
