//! A call that came through a tunnel: its outer path is in the index and on
//! its call page.

use crate::common;

use common::*;
use reqwest::header::COOKIE;
use voxtap_engine::index::{CallQuery, INDEX_FILE, Index};
use voxtap_proto::pcapio::{LinkType, PcapWriter};
use voxtap_proto::wire::{Emit, ethernet, ethernet::ethertype, ipv4, udp, vxlan};

fn wrap(r: &impl Emit, inner: &[u8]) -> Vec<u8> {
    let mut v = Vec::new();
    r.append(&mut v).unwrap();
    v.extend_from_slice(inner);
    v
}

/// The corpus call, every frame in VXLAN (VNI 42) over IPv4.
fn vxlan_capture(dst: &std::path::Path) {
    let src = corpus("generated/sipp-netns-udp-2calls.pcap");
    let mut r = voxtap_engine::pcapfile::open(&src).unwrap();
    let out = std::io::BufWriter::new(std::fs::File::create(dst).unwrap());
    let mut w = PcapWriter::new(out, LinkType::Ethernet, 262_144).unwrap();
    while let Some(rec) = r.next_packet().unwrap() {
        let vx = wrap(&vxlan::Repr { vni: 42 }, rec.data);
        let u = wrap(
            &udp::Repr {
                src_port: 50000,
                dst_port: 4789,
                payload_len: vx.len(),
            },
            &vx,
        );
        let ip = wrap(
            &ipv4::Repr {
                src_addr: [198, 51, 100, 1].into(),
                dst_addr: [198, 51, 100, 2].into(),
                protocol: 17,
                payload_len: u.len(),
                ttl: 64,
                tos: 0,
                ident: 0,
                dont_frag: true,
                more_frags: false,
                frag_offset: 0,
                options: &[],
            },
            &u,
        );
        let eth = ethernet::Repr {
            dst_addr: [2, 0, 0, 0, 0, 2],
            src_addr: [2, 0, 0, 0, 0, 1],
            ethertype: ethertype::IPV4,
        };
        let f = wrap(&eth, &ip);
        w.write_packet(rec.ts_ns, f.len() as u32, &f).unwrap();
    }
    w.flush().unwrap();
}

#[tokio::test]
async fn outer_path_in_the_index_and_on_the_call_page() {
    let tmp = tempfile::tempdir().unwrap();
    let file = tmp.path().join("vxlan.pcap");
    vxlan_capture(&file);
    let dir = data_dir_with(&file);
    let data = dir.path().canonicalize().unwrap();
    let idx = Index::open(&data.join(INDEX_FILE)).unwrap();
    let rows = idx
        .search(&CallQuery {
            limit: 10,
            ..Default::default()
        })
        .unwrap()
        .rows;
    assert_eq!(rows.len(), 2);
    let row = idx.call(rows[0].id).unwrap().unwrap();
    assert_eq!(row.outer_path, "vxlan(42)");

    let running = common::start(&data).await;
    let base = format!("http://{}", running.addr);
    let cookie = login(&base, USER, PASSWORD).await.expect("login");
    let page = client()
        .get(format!("{base}/calls/{}", row.id))
        .header(COOKIE, &cookie)
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    assert!(page.contains("Outer path"), "{page}");
    assert!(page.contains("vxlan(42)"), "{page}");
}
