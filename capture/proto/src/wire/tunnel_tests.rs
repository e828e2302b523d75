//! The tunnel headers: hand-written bytes (as the RFCs and drafts lay them
//! out) parse to the expected fields, and every `Repr` emits the bytes it
//! was parsed from.

use super::*;

fn emitted(r: &impl Emit) -> Vec<u8> {
    let mut out = vec![0xaa; r.buffer_len()];
    r.emit(&mut out).unwrap();
    out
}

#[test]
fn mpls_entry_and_control_word() {
    // Label 16, TC 5, bottom, TTL 64.
    let b = [0x00, 0x01, 0x0b, 0x40, 0xee];
    let p = mpls::Packet::new_checked(&b[..]).unwrap();
    let r = mpls::Repr::parse(&p).unwrap();
    assert_eq!(
        r,
        mpls::Repr {
            label: 16,
            traffic_class: 5,
            bottom: true,
            ttl: 64
        }
    );
    assert_eq!(p.payload(), &[0xee]);
    assert_eq!(emitted(&r), &b[..4]);
    assert!(mpls::Packet::new_checked(&b[..3]).is_err());
    let cw = mpls::ControlWordRepr::parse(&[0x00, 0x00, 0x01, 0x02]).unwrap();
    assert_eq!(cw.sequence, 0x0102);
    assert_eq!(emitted(&cw), [0x00, 0x00, 0x01, 0x02]);
    assert!(mpls::ControlWordRepr::parse(&[0x45, 0, 0, 0]).is_err());
}

#[test]
fn gre_optional_fields() {
    // C, K and S set, protocol IPv4: checksum, key 0x01020304, seq 7.
    let b = [
        0xb0, 0x00, 0x08, 0x00, 0x00, 0x00, 0x00, 0x00, 1, 2, 3, 4, 0, 0, 0, 7, 0x45,
    ];
    let p = gre::Packet::new_checked(&b[..]).unwrap();
    assert_eq!(
        (p.header_len(), p.key(), p.sequence(), p.protocol()),
        (16, Some(0x0102_0304), Some(7), 0x0800)
    );
    assert_eq!(p.payload(), &[0x45]);
    let r = gre::Repr::parse(&p).unwrap();
    assert_eq!(emitted(&r), &b[..16]);
    let mut buf = b.to_vec();
    gre::Packet::new_unchecked(&mut buf[..]).fill_checksum();
    assert!(
        gre::Packet::new_checked(&buf[..])
            .unwrap()
            .verify_checksum()
    );
    assert!(!gre::Packet::new_checked(&b[..]).unwrap().verify_checksum());
    // Only the key.
    let r = gre::Repr {
        protocol: 0x6558,
        checksum_present: false,
        key: Some(9),
        sequence: None,
    };
    assert_eq!(emitted(&r), [0x20, 0, 0x65, 0x58, 0, 0, 0, 9]);
    // Version 1, routing, truncated options.
    assert!(gre::Packet::new_checked(&[0x00, 0x01, 0x88, 0x0b][..]).is_err());
    assert!(gre::Packet::new_checked(&[0x40, 0x00, 0x08, 0x00][..]).is_err());
    assert!(gre::Packet::new_checked(&[0x20, 0x00, 0x08, 0x00, 1][..]).is_err());
}

#[test]
fn erspan_type_two_and_three() {
    // Type II: version 1, VLAN 100, COS 5, En 3, T, session 7, index 0x12345.
    let b = [0x10, 0x64, 0xbc, 0x07, 0x00, 0x01, 0x23, 0x45, 0xee];
    let p = erspan::Packet::new_checked(&b[..]).unwrap();
    let r = erspan::Repr::parse(&p).unwrap();
    assert_eq!(
        (r.vlan, r.cos, r.truncated, r.session_id),
        (100, 5, true, 7)
    );
    assert_eq!(
        r.kind,
        erspan::Kind::TypeII {
            encap_type: 3,
            index: 0x12345
        }
    );
    assert_eq!(p.payload(), &[0xee]);
    assert_eq!(emitted(&r), &b[..8]);
    // Type III with the platform subheader: FT 0, HW id 3, D, Gra 3, O.
    let mut b3 = vec![
        0x20, 0x00, 0x03, 0xff, 0, 0, 0x30, 0x39, 0x12, 0x34, 0x00, 0x3f,
    ];
    b3.extend_from_slice(&[9; 8]);
    b3.push(0xee);
    let p = erspan::Packet::new_checked(&b3[..]).unwrap();
    let r = erspan::Repr::parse(&p).unwrap();
    assert_eq!(
        (r.session_id, p.header_len(), p.payload()),
        (1023, 20, &[0xee][..])
    );
    let erspan::Kind::TypeIII {
        timestamp,
        sgt,
        hw_id,
        direction,
        granularity,
        platform,
        ..
    } = r.kind
    else {
        panic!("type III")
    };
    assert_eq!(
        (timestamp, sgt, hw_id, direction, granularity, platform),
        (12345, 0x1234, 3, true, 3, Some([9; 8]))
    );
    assert_eq!(emitted(&r), &b3[..20]);
    // Version 0 is not ERSPAN; the platform subheader must fit.
    assert!(erspan::Packet::new_checked(&[0u8; 12][..]).is_err());
    assert!(erspan::Packet::new_checked(&b3[..14]).is_err());
}

#[test]
fn vxlan_and_geneve() {
    let b = [0x08, 0, 0, 0, 0x12, 0x34, 0x56, 0, 0xee];
    let p = vxlan::Packet::new_checked(&b[..]).unwrap();
    assert_eq!((p.vni(), p.payload()), (0x123456, &[0xee][..]));
    assert_eq!(emitted(&vxlan::Repr::parse(&p).unwrap()), &b[..8]);
    assert!(vxlan::Packet::new_checked(&[0u8; 8][..]).is_err());

    // One 4-byte option, O and C set, Ethernet, VNI 42.
    let g = [
        0x01, 0xc0, 0x65, 0x58, 0, 0, 42, 0, 0x01, 0x02, 0x80, 0x00, 0xee,
    ];
    let p = geneve::Packet::new_checked(&g[..]).unwrap();
    let r = geneve::Repr::parse(&p).unwrap();
    assert_eq!(
        r,
        geneve::Repr {
            oam: true,
            critical: true,
            protocol: 0x6558,
            vni: 42,
            options: &g[8..12]
        }
    );
    assert_eq!(p.payload(), &[0xee]);
    assert_eq!(emitted(&r), &g[..12]);
    assert!(geneve::Packet::new_checked(&g[..11]).is_err());
    assert!(geneve::Packet::new_checked(&[0x40, 0, 0x65, 0x58, 0, 0, 0, 0][..]).is_err());
    let odd = geneve::Repr {
        options: &[1, 2, 3],
        ..r
    };
    assert!(odd.emit(&mut [0; 16]).is_err());
}

#[test]
fn pppoe_session() {
    // Session 0x0011, length 4: PPP IPv4 and two bytes, then padding.
    let b = [
        0x11, 0x00, 0x00, 0x11, 0x00, 0x04, 0x00, 0x21, 0x45, 0x00, 0, 0,
    ];
    let p = pppoe::Packet::new_checked(&b[..]).unwrap();
    let r = pppoe::Repr::parse(&p).unwrap();
    assert_eq!(
        r,
        pppoe::Repr {
            session_id: 0x11,
            protocol: 0x21,
            payload_len: 2
        }
    );
    assert_eq!(p.payload(), &[0x45, 0x00]);
    assert_eq!(emitted(&r), &b[..8]);
    // Compressed protocol field.
    let c = [0x11, 0x00, 0x00, 0x01, 0x00, 0x02, 0x21, 0x45];
    let p = pppoe::Packet::new_checked(&c[..]).unwrap();
    assert_eq!((p.protocol(), p.payload()), (0x21, &[0x45][..]));
    // Discovery stage, and a length past the data.
    assert!(pppoe::Packet::new_checked(&[0x11, 0x09, 0, 0, 0, 0][..]).is_err());
    assert!(pppoe::Packet::new_checked(&[0x11, 0x00, 0, 1, 0, 9, 0, 0x21][..]).is_err());
}

#[test]
fn gtpu_headers_and_extensions() {
    // G-PDU, TEID 1, no optional fields.
    let b = [0x30, 0xff, 0x00, 0x01, 0, 0, 0, 1, 0x45];
    let p = gtpu::Packet::new_checked(&b[..]).unwrap();
    let r = gtpu::Repr::parse(&p).unwrap();
    assert_eq!((r.teid, r.sequence, p.payload()), (1, None, &[0x45][..]));
    assert_eq!(emitted(&r), &b[..8]);
    // E and S: seq 5, one PDU session container (1 word), then payload.
    let e = [
        0x36, 0xff, 0x00, 0x09, 0, 0, 0, 2, 0x00, 0x05, 0x00, 0x85, 0x01, 0x10, 0x01, 0x00, 0x45,
    ];
    let p = gtpu::Packet::new_checked(&e[..]).unwrap();
    let r = gtpu::Repr::parse(&p).unwrap();
    assert_eq!(
        (r.sequence, r.next_extension, r.extensions, p.payload()),
        (Some(5), 0x85, &e[12..16], &[0x45][..])
    );
    assert_eq!(emitted(&r), &e[..16]);
    // A zero-length extension, an extension past the length, GTP'.
    let mut bad = e;
    bad[12] = 0;
    assert!(gtpu::Packet::new_checked(&bad[..]).is_err());
    let mut bad = e;
    bad[12] = 9;
    assert!(gtpu::Packet::new_checked(&bad[..]).is_err());
    assert!(gtpu::Packet::new_checked(&[0x20, 0xff, 0, 0, 0, 0, 0, 0][..]).is_err());
}
