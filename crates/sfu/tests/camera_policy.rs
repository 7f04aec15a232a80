//! The privacy policy, enforced by the engine: the customer's camera is dark until the
//! customer turns it on; only the customer can; revoking stops video at the next packet.

use std::time::Duration;

use sfu::policy::{Lens, Reason, Source};
use sfu::testing::{ClientOptions, SimNet};
use sfu::{CallOptions, DeclaredSource, DropReason, Error, Event, JoinRequest, Role, SfuConfig};

struct Call {
    net: SimNet,
    call: sfu::CallId,
    merchant: usize,
    customer: usize,
}

fn call_with(options: CallOptions) -> Call {
    let mut net = SimNet::new(SfuConfig::default());
    let call = net.create_call_with(options);
    let merchant = net.add_client(ClientOptions::default());
    let customer = net.add_client(ClientOptions::default());
    net.join(call, Role::Merchant, merchant).unwrap();
    net.join(call, Role::Customer, customer).unwrap();
    assert!(net.connect_all(Duration::from_secs(10)));
    Call {
        net,
        call,
        merchant,
        customer,
    }
}

/// One second of media from `who`: 50 audio packets, 30 video frames (keyframe first).
fn second_of_media(net: &mut SimNet, who: usize) {
    for i in 0..50 {
        net.send_audio(who);
        if i % 5 < 3 {
            net.send_video_frame(who, i == 0, 2);
        }
        net.run_for(Duration::from_millis(20));
    }
}

#[test]
fn customer_video_is_dropped_until_the_customer_turns_the_camera_on() {
    let Call {
        mut net,
        call,
        merchant,
        customer,
    } = call_with(CallOptions::default());
    // A hostile customer sends video from the first second.
    second_of_media(&mut net, customer);
    let m = net.client(merchant).stats().clone();
    assert_eq!(
        m.received_video.packets, 0,
        "no customer video before the grant"
    );
    assert_eq!(m.received_audio.packets, 50, "audio is not gated");
    let denied = net.engine.metrics().dropped.get(DropReason::PolicyDenied);
    assert_eq!(denied, net.client(customer).stats().sent_video.packets);

    // The merchant can neither turn it on nor force it.
    let err = net
        .engine
        .set_camera(
            call,
            Role::Merchant,
            Role::Customer,
            Some(Lens::Rear),
            net.now,
        )
        .unwrap_err();
    assert!(
        matches!(err, Error::PolicyRefused(Reason::NotOwnCamera { .. })),
        "{err}"
    );
    // The merchant may ask: an event, nothing more.
    net.engine
        .request_camera(call, Role::Merchant, Role::Customer)
        .unwrap();
    assert!(net.take_events().iter().any(|e| matches!(
        e,
        Event::CameraRequested {
            by: Role::Merchant,
            target: Role::Customer,
            ..
        }
    )));
    second_of_media(&mut net, customer);
    assert_eq!(net.client(merchant).stats().received_video.packets, 0);

    // The customer turns it on: the SFU asks the customer for a keyframe at once.
    let plis = net.client(customer).stats().plis_received;
    net.engine
        .set_camera(
            call,
            Role::Customer,
            Role::Customer,
            Some(Lens::Rear),
            net.now,
        )
        .unwrap();
    net.run_for(Duration::from_millis(20));
    assert!(
        net.client(customer).stats().plis_received > plis,
        "keyframe requested on grant"
    );
    second_of_media(&mut net, customer);
    let got = net.client(merchant).stats().received_video.packets;
    assert!(got >= 58, "video flows from the first keyframe on: {got}");

    // Off: the very next packet is dropped.
    net.engine
        .set_camera(call, Role::Customer, Role::Customer, None, net.now)
        .unwrap();
    second_of_media(&mut net, customer);
    assert_eq!(net.client(merchant).stats().received_video.packets, got);

    net.engine
        .end_call(call, sfu::EndReason::Requested, net.now)
        .unwrap();
    let record = net
        .take_events()
        .into_iter()
        .find_map(|e| match e {
            Event::CallEnded { record, .. } => Some(record),
            _ => None,
        })
        .unwrap();
    assert!(record.customer_camera_used);
    // On for one second of media plus the 20 ms step after turning it on.
    let secs = record.customer_camera_duration.as_secs_f64();
    assert!((1.0..1.1).contains(&secs), "camera seconds {secs}");
    assert!(record.merchant_camera_duration > record.customer_camera_duration);
}

#[test]
fn a_customer_declaring_a_screen_gets_that_mline_refused_and_nothing_forwarded() {
    let mut net = SimNet::new(SfuConfig::default());
    let call = net.create_call();
    let merchant = net.add_client(ClientOptions::default());
    let customer = net.add_client(ClientOptions::default());
    net.join(call, Role::Merchant, merchant).unwrap();
    let offer = net.offer(customer);
    let mut request = JoinRequest::new(Role::Customer, offer);
    request.tracks = vec![DeclaredSource {
        mid: "1".into(),
        source: Source::Screen,
    }];
    let answer = net.engine.join(call, request, net.now).unwrap();
    let refused: Vec<_> = answer.tracks.iter().filter(|t| !t.is_accepted()).collect();
    assert_eq!(refused.len(), 1);
    assert_eq!(refused[0].key, "1");
    assert!(
        answer.answer_sdp.contains("a=inactive"),
        "{}",
        answer.answer_sdp
    );
    net.accept_answer(customer, &answer.answer_sdp);
    assert!(
        net.connect_all(Duration::from_secs(10)),
        "the client does not hang"
    );
    // Even with the camera granted, nothing from the refused m-line is forwarded.
    net.engine
        .set_camera(
            call,
            Role::Customer,
            Role::Customer,
            Some(Lens::Rear),
            net.now,
        )
        .unwrap();
    second_of_media(&mut net, customer);
    assert_eq!(net.client(merchant).stats().received_video.packets, 0);
    assert_eq!(net.client(merchant).stats().received_audio.packets, 50);
}

#[test]
fn the_join_answer_carries_the_rear_camera_constraint() {
    let mut net = SimNet::new(SfuConfig::default());
    let call = net.create_call();
    let customer = net.add_client(ClientOptions::default());
    let offer = net.offer(customer);
    let answer = net
        .engine
        .join(call, JoinRequest::new(Role::Customer, offer), net.now)
        .unwrap();
    let camera = answer
        .constraints
        .camera
        .expect("the customer may use a camera");
    assert_eq!(
        camera.facing_mode,
        Some(sfu::policy::FacingMode::Environment)
    );
    assert!(!camera.on_at_join);
    assert!(answer.tracks.iter().all(|t| t.is_accepted()));
}

#[test]
fn audio_only_calls_refuse_every_camera() {
    let options = CallOptions {
        profile: Some("audio-only".into()),
        ..CallOptions::default()
    };
    let Call {
        mut net,
        call,
        merchant,
        customer,
    } = call_with(options);
    for role in Role::ALL {
        let err = net
            .engine
            .set_camera(call, role, role, Some(Lens::Front), net.now)
            .unwrap_err();
        assert!(matches!(err, Error::PolicyRefused(_)), "{err}");
    }
    second_of_media(&mut net, merchant);
    second_of_media(&mut net, customer);
    assert_eq!(net.client(customer).stats().received_video.packets, 0);
    assert_eq!(net.client(merchant).stats().received_video.packets, 0);
    assert_eq!(net.client(customer).stats().received_audio.packets, 50);
}

#[test]
fn an_ineligible_merchant_gets_an_audio_only_call() {
    let options = CallOptions {
        merchant_standing: Some(sfu::policy::MerchantStanding {
            rating: 3.0,
            reply_rate: 0.5,
            video_opt_in: true,
        }),
        ..CallOptions::default()
    };
    let mut config = SfuConfig::default();
    config.eligibility.min_rating = 4.5;
    let mut net = SimNet::new(config);
    let created = net.engine.create_call(options, net.now).unwrap();
    let reason = created
        .eligibility
        .reason()
        .expect("not eligible")
        .to_string();
    assert_eq!(reason, "rating 3 below 4.5");
    let err = net
        .engine
        .set_camera(
            created.id,
            Role::Merchant,
            Role::Merchant,
            Some(Lens::Front),
            net.now,
        )
        .unwrap_err();
    assert!(matches!(err, Error::PolicyRefused(_)));
}
