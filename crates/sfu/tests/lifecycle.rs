//! The call lifecycle on a fake clock: ringing, answered, missed, declined, cancelled, limits,
//! and the record each leaves.

use std::time::Duration;

use sfu::testing::{ClientOptions, SimNet};
use sfu::{
    CallLimits, CallLimitsOverride, CallOptions, CallRecord, CallState, EndReason, Error, Event,
    Role, SfuConfig,
};

fn net() -> SimNet {
    SimNet::new(SfuConfig {
        call_limits: CallLimits {
            ring_timeout: Duration::from_secs(30),
            max_duration: Duration::from_secs(600),
            inactivity_timeout: Duration::from_secs(20),
        },
        ..SfuConfig::default()
    })
}

fn ended(net: &mut SimNet) -> (EndReason, Box<CallRecord>) {
    net.take_events()
        .into_iter()
        .find_map(|e| match e {
            Event::CallEnded { reason, record, .. } => Some((reason, record)),
            _ => None,
        })
        .expect("the call ended")
}

#[test]
fn an_unanswered_call_is_missed_at_the_ring_timeout() {
    let mut net = net();
    let call = net.create_call_with(CallOptions {
        initiator: Role::Customer,
        merchant_ref: Some("shop-17".into()),
        ..CallOptions::default()
    });
    net.run_for(Duration::from_secs(29));
    assert_eq!(net.engine.call_state(call), Some(CallState::Ringing));
    net.run_for(Duration::from_secs(2));
    let (reason, record) = ended(&mut net);
    assert_eq!(reason, EndReason::Missed);
    assert_eq!(record.initiator, Role::Customer);
    assert_eq!(record.merchant_ref.as_deref(), Some("shop-17"));
    assert_eq!(record.answer_latency, None);
    assert!(record.ring_duration >= Duration::from_secs(30));
    assert!(net.engine.is_idle());
}

#[test]
fn declined_and_cancelled() {
    let mut net = net();
    let call = net.create_call();
    // The initiator cannot answer or decline its own call.
    assert!(matches!(
        net.engine.decline(call, Role::Merchant, net.now),
        Err(Error::WrongState { .. })
    ));
    net.run_for(Duration::from_secs(3));
    net.engine.decline(call, Role::Customer, net.now).unwrap();
    let (reason, record) = ended(&mut net);
    assert_eq!(reason, EndReason::Declined);
    assert_eq!(record.ring_duration, Duration::from_secs(3));

    let call = net.create_call();
    net.run_for(Duration::from_secs(5));
    net.engine
        .end_call(call, EndReason::Requested, net.now)
        .unwrap();
    assert_eq!(ended(&mut net).0, EndReason::Cancelled);
}

#[test]
fn answering_then_hanging_up_records_latency_and_duration() {
    let mut net = net();
    let call = net.create_call();
    let m = net.add_client(ClientOptions::default());
    let c = net.add_client(ClientOptions::default());
    net.join(call, Role::Merchant, m).unwrap();
    net.run_for(Duration::from_secs(4));
    // The callee joining answers the call.
    net.join(call, Role::Customer, c).unwrap();
    assert_eq!(net.engine.call_state(call), Some(CallState::Answered));
    assert!(net.connect_all(Duration::from_secs(5)));
    assert_eq!(net.engine.call_state(call), Some(CallState::Connected));
    for _ in 0..50 {
        net.send_audio(m);
        net.send_audio(c);
        net.run_for(Duration::from_millis(200));
    }
    net.engine
        .end_call(call, EndReason::Requested, net.now)
        .unwrap();
    let (reason, record) = ended(&mut net);
    assert_eq!(reason, EndReason::Requested);
    let latency = record.answer_latency.expect("answered");
    assert!(latency >= Duration::from_secs(4) && latency < Duration::from_secs(5));
    assert!(record.connected_duration >= Duration::from_secs(10));
    assert_eq!(record.to_customer.packets, 50);
    assert_eq!(record.to_merchant.packets, 50);
    assert!(record.to_customer.average_bitrate_bps > 0);
    assert!(!record.customer_camera_used);
}

#[test]
fn explicit_answer_and_inactivity() {
    let mut net = net();
    let call = net.create_call();
    net.run_for(Duration::from_secs(2));
    net.engine.answer(call, Role::Customer, net.now).unwrap();
    assert!(net
        .take_events()
        .iter()
        .any(|e| matches!(e, Event::CallAnswered { answer_latency, .. } if *answer_latency == Duration::from_secs(2))));
    // Nobody ever sends media: the inactivity limit ends it 20 s after the answer.
    net.run_for(Duration::from_secs(19));
    assert_eq!(net.engine.call_state(call), Some(CallState::Answered));
    net.run_for(Duration::from_secs(2));
    assert_eq!(ended(&mut net).0, EndReason::Inactivity);
}

#[test]
fn media_keeps_a_call_alive_until_the_max_duration() {
    let mut net = net();
    let call = net.create_call_with(CallOptions {
        limits: CallLimitsOverride {
            max_duration: Some(Duration::from_secs(60)),
            ..Default::default()
        },
        ..CallOptions::default()
    });
    let m = net.add_client(ClientOptions::default());
    let c = net.add_client(ClientOptions::default());
    net.join(call, Role::Merchant, m).unwrap();
    net.join(call, Role::Customer, c).unwrap();
    assert!(net.connect_all(Duration::from_secs(5)));
    // One packet every 10 s keeps the 20 s inactivity limit away.
    for _ in 0..5 {
        net.send_audio(m);
        net.run_for(Duration::from_secs(10));
        assert_ne!(net.engine.call_state(call), None);
    }
    net.send_audio(m);
    net.run_for(Duration::from_secs(12));
    let (reason, record) = ended(&mut net);
    assert_eq!(reason, EndReason::MaxDuration);
    assert!(record.duration >= Duration::from_secs(60));
}

#[test]
fn a_zero_limit_is_refused() {
    let mut net = net();
    let err = net
        .engine
        .create_call(
            CallOptions {
                limits: CallLimitsOverride {
                    ring_timeout: Some(Duration::ZERO),
                    ..Default::default()
                },
                ..CallOptions::default()
            },
            net.now,
        )
        .unwrap_err();
    assert_eq!(
        err.to_string(),
        "invalid argument: ring_timeout must be greater than 0"
    );
}
