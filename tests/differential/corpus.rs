//! The differential test's corpus: fake hosts (device names, card ids, layouts) and
//! device config files. Deterministic: the same corpus on every run.

use std::collections::BTreeSet;
use std::fmt::Write as _;
use std::os::unix::fs::symlink;
use std::path::{Path, PathBuf};

use mediamtx_stream_manager::naming;

use super::common::fake_host::FakeHost;
use super::PARAMS;

// ---------------------------------------------------------------------------------------
// Corpus

/// Real `/dev/snd/by-id` names of common USB microphones and interfaces (udev's
/// `usb-<vendor>_<model>_<serial>-<interface>`), as the kernel and udev write them.
pub const REAL: &[&str] = &[
    "usb-Blue_Microphones_Yeti_Stereo_Microphone_REV8-00",
    "usb-Blue_Microphones_Yeti_Stereo_Microphone_797_2018_12_21_47361-00",
    "usb-Blue_Microphones_Yeti_X_2034SG001Y28_888-000313110306-00",
    "usb-Blue_Microphones_Yeti_Nano_1945SG000AN8_888-000301110106-00",
    "usb-Blue_Microphones_Snowball_201305-00",
    "usb-BLUE_MICROPHONE_Blue_Snowball_201305-00",
    "usb-Blue_Microphones_Yeti_GX_2213SG00B3X8-00",
    "usb-RODE_Microphones_RODE_NT-USB-00",
    "usb-RODE_Microphones_RODE_NT-USB_Mini_9F2B3C1A-00",
    "usb-RØDE_Microphones_RØDE_NT-USB+_C8F2A1B3-00",
    "usb-R__DE_Microphones_R__DE_PodMic_USB_4A3B2C1D-00",
    "usb-RODE_Microphones_RODECaster_Pro_II-00",
    "usb-RODE_Microphones_Wireless_GO_II_RX-00",
    "usb-Audio-Technica_Corporation_AT2020USB+-00",
    "usb-Audio-Technica_AT2020USB_-00",
    "usb-Audio-Technica_Corp._AT2020USB-X-00",
    "usb-Audio-Technica_Corporation_ATR2100x-USB_Microphone-00",
    "usb-Audio-Technica_Corporation_AT2005USB-00",
    "usb-Focusrite_Scarlett_2i2_USB_Y8XKMR611A4A9F-00",
    "usb-Focusrite_Scarlett_Solo_USB_Y7RZ2GA0B3F8C1-00",
    "usb-Focusrite_Scarlett_2i2_4th_Gen_S2F4R3B9C1D0E5-00",
    "usb-Focusrite_Scarlett_18i20_USB_P9E1234567ABC-00",
    "usb-Focusrite_Scarlett_4i4_4th_Gen_S4A1B2C3D4E5-00",
    "usb-Focusrite_Vocaster_One_USB_V1A2B3C4D5-00",
    "usb-BEHRINGER_UMC202HD_192k-00",
    "usb-BEHRINGER_UMC204HD_192k-00",
    "usb-BEHRINGER_UMC404HD_192k-00",
    "usb-BEHRINGER_UMC22-00",
    "usb-Burr-Brown_from_TI_USB_Audio_CODEC-00",
    "usb-BEHRINGER_X-USB_2B53A4D1-00",
    "usb-BEHRINGER_FLOW_8_FL8A1234-00",
    "usb-Samson_Technologies_Samson_Meteor_Mic-00",
    "usb-Samson_Technologies_Samson_Q2U_Microphone-00",
    "usb-Samson_Technologies_Samson_GoMic-00",
    "usb-Samson_Technologies_Samson_Q9U-00",
    "usb-SAMSON_C01U_Pro-00",
    "usb-ZOOM_Corporation_H2n-00",
    "usb-ZOOM_Corporation_H4n_Pro-00",
    "usb-Zoom_H5_000000000000-00",
    "usb-ZOOM_Corporation_ZOOM_H6_Audio-00",
    "usb-ZOOM_Corporation_ZOOM_PodTrak_P4-00",
    "usb-ZOOM_Corporation_F3-00",
    "usb-C-Media_Electronics_Inc._USB_PnP_Sound_Device-00",
    "usb-C-Media_Electronics_Inc._USB_Audio_Device-00",
    "usb-C-Media_Electronics_Inc._USB_Advanced_Audio_Device-00",
    "usb-GeneralPlus_USB_Audio_Device-00",
    "usb-Jieli_Technology_UACDemoV1.0_1120040804000000-00",
    "usb-Generic_USB_Audio_201405280001-00",
    "usb-0c76_USB_PnP_Audio_Device-00",
    "usb-MV7-00",
    "usb-Shure_Inc_Shure_MV7-00",
    "usb-Shure_Inc_Shure_MV5-00",
    "usb-Shure_Inc_Shure_MV51_Digital_Large-Diaphragm_Microphone-00",
    "usb-Shure_Inc_Shure_MV7+_000000000001-00",
    "usb-Shure_Inc_Shure_MVX2U_MVX2U-2203-00",
    "usb-Logitech_Logitech_USB_Headset-00",
    "usb-Logitech_G_PRO_X_Gaming_Headset_00000000-00",
    "usb-046d_HD_Pro_Webcam_C920_A1B2C3D4-02",
    "usb-046d_0825_12345678-02",
    "usb-Logitech_Yeti_GX_2313SG00A1B2-00",
    "usb-Razer_Razer_Seiren_Mini_UC2115L03401016-00",
    "usb-Razer_Inc_Razer_Seiren_X_UC1234-00",
    "usb-HyperX_HyperX_QuadCast_4100-00",
    "usb-Kingston_HyperX_QuadCast_S_4100-00",
    "usb-HP__Inc_HyperX_SoloCast-00",
    "usb-Elgato_Systems_Elgato_Wave_3_BS01K1A02345-00",
    "usb-Elgato_Wave_1_BS20K1A00012-00",
    "usb-FIFINE_Microphones_Fifine_K669_Microphone_REV1.0-00",
    "usb-FIFINE_Microphones_AmpliGame_A8-00",
    "usb-MAONO_AU-PM421_2020-00",
    "usb-MAONO_Maonocaster-00",
    "usb-TONOR_TONOR_TC-777_Audio_Device-00",
    "usb-Antlion_Audio_Antlion_USB_adapter-00",
    "usb-Apogee_Electronics_Corp_HypeMiC-00",
    "usb-PreSonus_AudioBox_USB_96_AB1234567-00",
    "usb-PreSonus_Revelator_io24_RV1A2B3C-00",
    "usb-M-Audio_M-Track_2X2M-00",
    "usb-M-Audio_AIR_192_4-00",
    "usb-Roland_Rubix22-00",
    "usb-Roland_UA-25EX-00",
    "usb-TASCAM_US-2x2-00",
    "usb-TEAC_Corporation_TASCAM_DR-40X-00",
    "usb-Tascam_DR-05X-00",
    "usb-MOTU_M2_M2AE12345ABC-00",
    "usb-Native_Instruments_Komplete_Audio_6_123456AB-00",
    "usb-Steinberg_UR22mkII-00",
    "usb-Yamaha_Corporation_Steinberg_UR22C-00",
    "usb-Yamaha_Corporation_AG03MK2-00",
    "usb-SteelSeries_SteelSeries_Arctis_7-00",
    "usb-Plantronics_Plantronics_Blackwire_3220_Series_D1C2B3A4-00",
    "usb-Jabra_Jabra_SPEAK_510_USB_745C4B6B2B7E020A00-00",
    "usb-Sennheiser_Communications_Sennheiser_USB_headset-00",
    "usb-Sennheiser_Profile_USB_Microphone-00",
    "usb-Sonix_Technology_Co.__Ltd._USB_2.0_Camera_SN0001-02",
    "usb-Microsoft_Microsoft___LifeCam_HD-3000-02",
    "usb-Creative_Technology_Ltd_Sound_Blaster_Play__3_00128226-00",
    "usb-DJI_DJI_Mic_2_5A3C2D1E-00",
    "usb-Sony_Corporation_ICD-UX570-00",
    "usb-Audient_iD4-00",
    "usb-Audient_EVO_4-00",
    "usb-Solid_State_Logic_SSL_2-00",
    "usb-Universal_Audio_Volt_1_VOLT1A2B3C-00",
    "usb-Boya_BY-PM500-00",
    "usb-Turtle_Beach_Stealth_600-00",
    "usb-Tonor_TC30_Audio_Device-00",
    "usb-Neat_Microphones_Neat_Bumblebee_II-00",
    "usb-Marantz_Professional_MPM-2000U-00",
    "usb-Movo_UM700-00",
    "usb-JLAB_TALK_GO_MICROPHONE-00",
    "usb-Saramonic_SmartRig_Di-00",
    "usb-Lewitt_Audio_Connect_6_L6A1B2-00",
    "usb-IK_Multimedia_iRig_Pro_Duo_I_O-00",
    "usb-Cambridge_Silicon_Radio_USB_Audio-00",
    "usb-Realtek_USB_Audio_201405280001-00",
    "usb-Texas_Instruments_PCM2902_Audio_Codec-00",
    "usb-Unknown_USB_Audio_Device-00",
    "usb-Plugable_USB_Audio_Device-00",
    "usb-Sabrent_USB_Audio_Adapter-00",
    "usb-ASUS_Xonar_U3-00",
];

/// Names that probe every rule: prefixes, digits, punctuation, reserved words, Unicode
/// (including characters whose Unicode lowercase is ASCII), echo options, lengths around 48.
pub fn edge_names() -> Vec<String> {
    let mut v: Vec<String> = [
        // Prefixes (each in turn, case-sensitive) and digit-leading rests.
        "usb-audio-blue-yeti",
        "usb_audio_Zoom_H2n",
        "usb-audio-usb_audio_mic",
        "usb_audio_usb-audio-mic",
        "USB-AUDIO-Mic",
        "usb-AUDIO-mic",
        "x-usb-audio-y",
        "usb-audio-1234",
        "usb-audio-2mic",
        "usb_audio_48k",
        "usb-audio-_7",
        "usb-audio-0",
        "2nd_Mic-00",
        "1234",
        "9-00",
        "0d8c_0014-00",
        "_leading_underscore-00",
        "-leading-dash-00",
        "usb-1-00",
        // Reserved words.
        "usb-audio-api",
        "usb-audio-health",
        "usb_audio_metrics",
        "control",
        "Stats",
        "usb-audio-Control",
        "usb-audio-stream_api",
        "usb-audio-api-2",
        // Punctuation (udev keeps `#+-.:=@_`; others appear in hand-made links).
        "usb-Foo.Bar+Baz=1@2#3-00",
        "usb-..__--",
        "usb-audio-___",
        "---",
        "usb-(Mic)-00",
        "usb-Mic!!-00",
        "usb-A&B-00",
        "usb-Mic'Quote-00",
        "usb-Mic\"Q-00",
        "usb-Mic$HOME-00",
        "usb-Mic*-00",
        "usb-Mic?-00",
        "usb-Mic\\x20Pro-00",
        "usb-Mic Pro-00",
        "usb-Mic  Two  Spaces-00",
        "usb-Vendor:Model-00",
        "usb-a,b;c-00",
        "usb-Mic~1-00",
        "usb-Mic[1]-00",
        "usb-Mic{1}-00",
        "usb-100%_Mic-00",
        "usb-Mic^2-00",
        "usb-Mic`x`-00",
        "usb-Mic|pipe-00",
        // bash's `echo "$name"` takes these as options and prints nothing.
        "usb-audio--n",
        "usb-audio--e",
        "usb-audio--E",
        "usb-audio--neE",
        "usb-audio--x",
        "usb-audio--",
        // Unicode: only ASCII letters are lowercased (bash under LC_ALL=C).
        "usb-Kelvin_\u{212a}_Mic-00",
        "usb-\u{212a}_Mic-00",
        "usb-\u{130}stanbul_Mic-00",
        "usb-\u{131}_Mic-00",
        "usb-Müller_Mikrofon-00",
        "usb-Ünïcödé-00",
        "usb-音声-00",
        "usb-マイク_USB-00",
        "usb-\u{216b}_Mic-00",
        "usb-\u{1c5}_Mic-00",
        "usb-ß_Mic-00",
        "usb-\u{1e9e}_Mic-00",
        "usb-Ω_Mic-00",
        "usb-ＡＢＣ_Mic-00",
        "usb-Ä-00",
        "usb-🎤_Mic-00",
        "usb-ﬁ_Mic-00",
        "usb-Ångström_Audio-00",
        "usb-Ελληνικά_Mic-00",
        "usb-Кириллица_Mic-00",
        "Ü-only",
        "usb-audio-Über",
        "usb-audio-éclair",
        "\u{212a}",
        "usb-audio-\u{212a}9",
    ]
    .iter()
    .map(|s| s.to_string())
    .collect();
    // Lengths around the 48/49 boundary of the sanitised name, letter- and digit-leading,
    // with and without the usb-audio- prefix, with collapsing runs, and very long.
    for n in [46, 47, 48, 49, 50, 51] {
        v.push("m".repeat(n));
        v.push(format!("usb-audio-{}", "a".repeat(n)));
        v.push("7".repeat(n));
        v.push(format!("usb-audio-{}", "3".repeat(n)));
        v.push(format!("usb-{}-00", "x".repeat(n - 7)));
        v.push(format!(
            "usb-{}__--__{}",
            "k".repeat(n / 2),
            "Q".repeat(n / 2)
        ));
    }
    v.push(format!("usb-{}_{}-00", "a".repeat(37), "b".repeat(20)));
    v.push(format!("usb-{}-00", "Long_Vendor_Name_".repeat(8)));
    v.push(format!("usb-{}-00", "9".repeat(200)));
    v.push(format!("usb-{}", "é".repeat(60)));
    v.push(format!("usb-audio-{}", "Ⅻ".repeat(20)));
    v.push(format!("{}-00", "Z".repeat(240)));
    v
}

/// `n` names drawn (deterministically) from prefixes, ASCII letters, digits, punctuation and
/// non-ASCII characters, with lengths around the cuts.
fn random_names(n: usize) -> Vec<String> {
    const PREFIXES: [&str; 8] = [
        "",
        "usb-",
        "usb-audio-",
        "usb_audio_",
        "USB-",
        "usb-audio--",
        "1",
        "usb-audio-9",
    ];
    let chars: Vec<char> = "abcxyzABCXYZ0123456789_-.:+=@#~!$%^&*()[]{}' ,;?|"
        .chars()
        .chain([
            'ü', 'ß', '\u{212a}', '\u{130}', 'ı', 'Ⅻ', 'é', '音', 'Ω', 'Ａ', '\u{a0}',
        ])
        .collect();
    let mut rng = Rng(0x2545_f491_4f6c_dd1d);
    (0..n)
        .map(|_| {
            let len = [1, 3, 8, 20, 39, 40, 46, 48, 49, 60][rng.below(10)];
            let mut s = PREFIXES[rng.below(PREFIXES.len())].to_string();
            s.extend((0..len).map(|_| chars[rng.below(chars.len())]));
            s
        })
        .collect()
}

/// ALSA card ids (`/proc/asound/card<N>/id`): kernel-made ones with capitals, `_` and
/// digits, and udev-style lowercase ones (SPEC §4 rule 2).
pub const CARD_IDS: &[&str] = &[
    "Microphones",
    "Device",
    "U0x46d0x825",
    "II",
    "Mic",
    "Audio",
    "USB",
    "CODEC",
    "Yeti",
    "NTUSB",
    "AT2020USB",
    "Scarlett2i2USB",
    "UMC202HD",
    "Device_1",
    "Mic_2",
    "H2n",
    "S7",
    "b1",
    "mv7",
    "blue-yeti",
    "garden_mic",
    "a",
    "x-1",
    "Set",
    "Headset",
    "C920",
    "Q2U",
    "K669",
    "2Mic",
    "1",
    "mic_",
    "pond-",
    "Camera",
    "PnP",
    "USB_Audio",
    "abcdefghijklmnop",
    "Z9_x-Y",
    "yard1",
];

/// Card ids of hosts with no by-id link at all (SPEC §4 rule 4).
pub const FALLBACK_IDS: &[&str] = &[
    "Microphones",
    "Device_1",
    "Device",
    "2Mic",
    "Audio",
    "USB_Audio",
    "Mic-2",
    "mic",
    "garden",
    "UMC202HD",
    "AT2020USB",
    "Scarlett_2i2",
    "II",
    "S",
    "X_Y_Z",
    "a_b",
    "AbC-1_d",
    "Device_12345678",
    "api",
    "Health",
    "9",
    "U0x46d0x825",
    "_m",
    "yard-1",
    "NT_USB",
    "Q2U",
    "Headset",
    "Codec_2",
];

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    /// One USB card with a by-id link (next to an on-board card).
    Single,
    /// No by-id link to a USB card at all.
    NoLinks,
    /// A linked card and a card of another model without a link.
    Mixed,
    /// Identical twins sharing one by-id link.
    Twins,
}

/// One fake host and what is known about its layout.
pub struct Host {
    pub kind: Kind,
    /// The by-id name of a `Single` host.
    pub by_id: Option<String>,
    pub root: PathBuf,
    /// Cards that have their own by-id link.
    pub linked: BTreeSet<u32>,
    /// Cards that are the link-less twin of another card.
    pub twins: BTreeSet<u32>,
    /// Whether any USB card has a by-id link (else bash uses /proc/asound/cards).
    pub any_link: bool,
    pub what: String,
}

/// A deterministic generator (xorshift), so the corpus is the same on every run.
pub struct Rng(pub u64);
impl Rng {
    pub fn next(&mut self) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0
    }
    pub fn below(&mut self, n: usize) -> usize {
        (self.next() % n as u64) as usize
    }
    pub fn chance(&mut self, percent: u64) -> bool {
        self.next() % 100 < percent
    }
}

pub fn card_number(i: usize) -> u32 {
    [1, 2, 3, 4, 5, 7, 9, 10, 11, 12, 15, 20, 21, 29, 31][i % 15]
}

/// Build every host of the corpus under `dir`.
pub fn build_hosts(dir: &Path) -> Vec<Host> {
    let mut hosts = Vec::new();
    let mut names: Vec<String> = REAL.iter().map(|s| s.to_string()).collect();
    // Other interfaces of the same devices, as udev names them.
    for s in REAL.iter().step_by(4) {
        names.push(s.replace("-00", "-01"));
    }
    names.extend(edge_names());
    names.extend(random_names(60));
    let mut next = 0;
    let mut new_host = |what: String| {
        next += 1;
        let root = dir.join(format!("h{next:03}"));
        (root, what)
    };
    // One USB card per host (next to an on-board card), so names never collide.
    for (i, by_id) in names.iter().enumerate() {
        let card = card_number(i);
        let id = CARD_IDS[i % CARD_IDS.len()];
        let (root, what) = new_host(format!("by-id {by_id:?}, card {card} id {id:?}"));
        let mut h = FakeHost::new(&root);
        if card != 0 {
            h.add_onboard_card(0, "Headphones");
        }
        h.add_usb_card(
            card,
            id,
            Some(by_id),
            Some(&format!("platform-xhci-hcd.0-usb-0:1.{card}:1.0")),
        );
        if i % 7 == 0 {
            // An input-event link of the same device: skipped by both.
            let ev = format!("{}-event-if00", by_id.trim_end_matches("-00"));
            if !ev.contains('/') {
                let _ = symlink(
                    format!("../controlC{card}"),
                    h.dev_snd.join("by-id").join(ev),
                );
            }
        }
        hosts.push(Host {
            kind: Kind::Single,
            by_id: Some(by_id.clone()),
            root,
            linked: [card].into(),
            twins: BTreeSet::new(),
            any_link: true,
            what,
        });
    }
    // A by-id name that is not UTF-8 (Latin-1 bytes): each odd byte is "other" for both.
    for (i, raw) in [
        &b"usb-Caf\xe9_Mic-00"[..],
        b"usb-\xff\xfe-00",
        b"\xe9t\xe9-00",
    ]
    .iter()
    .enumerate()
    {
        use std::os::unix::ffi::OsStrExt;
        let (root, what) = new_host(format!("by-id bytes {:?}", String::from_utf8_lossy(raw)));
        let mut h = FakeHost::new(&root);
        let card = 3 + i as u32;
        h.add_usb_card(card, "Mic", None, None);
        symlink(
            format!("../controlC{card}"),
            h.dev_snd
                .join("by-id")
                .join(std::ffi::OsStr::from_bytes(raw)),
        )
        .unwrap();
        hosts.push(Host {
            kind: Kind::Single,
            by_id: None,
            root,
            linked: [card].into(),
            twins: BTreeSet::new(),
            any_link: true,
            what,
        });
    }
    // A by-id link to a by-path link to the control node (bash's `readlink -f` follows it).
    {
        let target = "../by-path/pci-0000:00:14.0-usb-0:3:1.0";
        let (root, what) = new_host(format!("by-id usb-Chained_Mic-00 -> {target}"));
        let mut h = FakeHost::new(&root);
        h.add_usb_card(6, "Chain", None, Some("pci-0000:00:14.0-usb-0:3:1.0"));
        let by_id = "usb-Chained_Mic-00".to_string();
        symlink(target, h.dev_snd.join("by-id").join(&by_id)).unwrap();
        hosts.push(Host {
            kind: Kind::Single,
            by_id: Some(by_id),
            root,
            linked: [6].into(),
            twins: BTreeSet::new(),
            any_link: true,
            what,
        });
    }
    // No by-id link at all (a container, no udev): bash reads /proc/asound/cards.
    for (i, chunk) in FALLBACK_IDS.chunks(2).enumerate() {
        let mut what = String::from("no by-id links:");
        let (root, _) = new_host(String::new());
        let mut h = FakeHost::new(&root);
        h.add_onboard_card(0, "Headphones");
        for (j, id) in chunk.iter().enumerate() {
            let card = card_number(i + 3 * j);
            let card = if j > 0 && card == card_number(i) {
                card + 1
            } else {
                card
            };
            h.add_usb_card(card, id, None, None);
            let _ = write!(what, " card {card} {id:?}");
        }
        if i % 3 == 1 {
            // Only an input-event link, or a link to the on-board card: still no USB link.
            let _ = symlink(
                "../controlC1",
                h.dev_snd.join("by-id/usb-Foo_Mic-event-if00"),
            );
            let _ = symlink("../controlC0", h.dev_snd.join("by-id/platform-bcm2835-00"));
            what.push_str(" (+ event and on-board links)");
        }
        hosts.push(Host {
            kind: Kind::NoLinks,
            by_id: None,
            root,
            linked: BTreeSet::new(),
            twins: BTreeSet::new(),
            any_link: false,
            what,
        });
    }
    // One id alone, padded by the kernel to 15 characters.
    for id in [
        "Microphones",
        "Device_1",
        "USB_Audio",
        "a",
        "MIC-MIC-MIC-MIC",
    ] {
        let (root, what) = new_host(format!("no by-id links: card 1 {id:?} alone"));
        let mut h = FakeHost::new(&root);
        h.add_usb_card(1, id, None, None);
        hosts.push(Host {
            kind: Kind::NoLinks,
            by_id: None,
            root,
            linked: BTreeSet::new(),
            twins: BTreeSet::new(),
            any_link: false,
            what,
        });
    }
    // A linked card and a card without a link (another model).
    for (i, (by_id, other)) in [
        (
            "usb-Blue_Microphones_Yeti_Stereo_Microphone_REV8-00",
            "Device_1",
        ),
        ("usb-MV7-00", "Microphones"),
        ("usb-audio-1234", "2Mic"),
        ("usb-Kelvin_\u{212a}_Mic-00", "garden"),
        ("usb-Samson_Technologies_Samson_Q2U_Microphone-00", "Q2U"),
    ]
    .iter()
    .enumerate()
    {
        let (root, what) = new_host(format!("mixed: card 1 {by_id:?}, card 2 {other:?} no link"));
        let mut h = FakeHost::new(&root);
        h.add_usb_card(1, "Mic", Some(by_id), None);
        h.add_usb_card(2 + i as u32, other, None, None);
        hosts.push(Host {
            kind: Kind::Mixed,
            by_id: None,
            root,
            linked: [1].into(),
            twins: BTreeSet::new(),
            any_link: true,
            what,
        });
    }
    // Identical twins: udev keeps one by-id link; the second card shares the usbid.
    for (i, by_id) in [
        "usb-Blue_Microphones_Yeti_Stereo_Microphone_REV8-00",
        "usb-C-Media_Electronics_Inc._USB_PnP_Sound_Device-00",
        "usb-MV7-00",
        "usb-audio-1234",
        "usb-Kelvin_\u{212a}_Mic-00",
        "usb-BEHRINGER_UMC202HD_192k-00",
    ]
    .iter()
    .enumerate()
    {
        let (a, b) = if i % 2 == 0 { (4, 2) } else { (2, 4) };
        let (root, what) = new_host(format!(
            "twins {by_id:?}: card 1 on port 1.{a} with the link, card 2 on port 1.{b}"
        ));
        let mut h = FakeHost::new(&root);
        let usbid = "b58e:9e84";
        h.add_usb_card_with_usbid(
            1,
            "Microphones",
            Some(by_id),
            Some(&format!("platform-xhci-hcd.0-usb-0:1.{a}:1.0")),
            usbid,
        );
        h.add_usb_card_with_usbid(
            2,
            "Microphones_1",
            None,
            Some(&format!("platform-xhci-hcd.0-usb-0:1.{b}:1.0")),
            usbid,
        );
        hosts.push(Host {
            kind: Kind::Twins,
            by_id: None,
            root,
            linked: [1].into(),
            twins: [2].into(),
            any_link: true,
            what,
        });
    }
    hosts
}

// ---------------------------------------------------------------------------------------
// Device config files

/// `<KEY>` as an operator might write it for `name` (independent of our code: non-alnum → `_`,
/// runs collapsed, ends trimmed, `dev_` before a digit, uppercase).
pub fn stem(name: &str) -> String {
    let mut out = String::new();
    for c in name.chars() {
        let c = if c.is_ascii_alphanumeric() { c } else { '_' };
        if !(c == '_' && out.ends_with('_')) {
            out.push(c);
        }
    }
    let out = out.trim_matches('_');
    let out = if out.starts_with(|c: char| c.is_ascii_digit()) {
        format!("dev_{out}")
    } else {
        out.to_string()
    };
    out.to_ascii_uppercase()
}

/// Keys an operator might have written for a device: right ones and near misses (Unicode
/// lowercasing, no `stream_` prefix, the card id, the old `device_1` form, ...).
pub fn candidate_stems(by_id: Option<&str>, card_id: &str) -> Vec<String> {
    let mut c = Vec::new();
    let padded = format!("{card_id:<15}");
    if let Some(b) = by_id {
        let rest = b.strip_prefix("usb-audio-").unwrap_or(b);
        c.push(stem(b));
        c.push(stem(rest));
        c.push(stem(&rest.to_lowercase()));
        c.push(stem(&format!("stream_{rest}")));
        c.push(stem(&naming::stream_name_from_by_id(b)));
        let cut: String = stem(rest).chars().take(39).collect();
        c.push(cut);
    } else {
        let f = naming::cards_fallback_name(&padded).unwrap_or_default();
        c.push(stem(&f));
        c.push(stem(f.strip_prefix("usb-audio-").unwrap_or(&f)));
        c.push(stem(&format!("usb-audio-{card_id}")));
        c.push(stem(&format!("stream_{card_id}")));
    }
    c.push(stem(card_id));
    c.push(stem(&card_id.to_lowercase()));
    c.retain(|s| !s.is_empty());
    let mut seen = BTreeSet::new();
    c.retain(|s| seen.insert(s.clone()));
    c
}

pub fn value_for(param: &str, i: usize) -> String {
    let pick = |v: &[&str]| v[i % v.len()].to_string();
    match param {
        "SAMPLE_RATE" => pick(&[
            "44100", "16000", "22050", "32000", "96000", "11025", "88200", "24000", "8000",
        ]),
        "CHANNELS" => pick(&["1", "3", "4", "5", "6", "7", "8", "12", "16"]),
        "CODEC" => pick(&["aac", "mp3", "pcm", "AAC", "Mp3", "opus", "PCM"]),
        "BITRATE" => pick(&[
            "64k", "96k", "192k", "256000", "1M", "48k", "320k", "24K", "2m",
        ]),
        _ => pick(&[
            "1024", "2048", "4096", "16384", "512", "32768", "65536", "100",
        ]),
    }
}

/// A device config for `devices` ((by-id, card id) pairs), in one of many shapes. Within a
/// file no two lines give one parameter the same value, even after SPEC §5 normalising
/// (`AAC` = `aac`), so a value tells which line won.
pub fn make_conf(rng: &mut Rng, devices: &[(Option<String>, String)], shape: usize) -> Vec<u8> {
    let mut lines: Vec<String> = vec!["# audio-devices.conf".into(), String::new()];
    let defaults = shape % 4 == 1;
    let mut used: BTreeSet<(&str, String)> = BTreeSet::new();
    if defaults {
        used.insert(("SAMPLE_RATE", "32000".into()));
        used.insert(("CODEC", "mp3".into()));
    }
    let mut k = rng.below(5);
    // The next value of `param` not used yet in this file.
    let fresh = |param: &'static str, k: &mut usize, used: &mut BTreeSet<(&str, String)>| {
        for _ in 0..12 {
            *k += 1;
            let v = value_for(param, *k);
            let n = normalised(param, &v).unwrap_or_else(|| v.clone());
            if used.insert((param, n)) {
                return Some(v);
            }
        }
        None
    };
    for (by_id, card_id) in devices {
        let stems = candidate_stems(by_id.as_deref(), card_id);
        for param in PARAMS {
            for s in &stems {
                if !rng.chance(45) {
                    continue;
                }
                let Some(v) = fresh(param, &mut k, &mut used) else {
                    continue;
                };
                let line = match rng.below(9) {
                    0 => format!("export DEVICE_{s}_{param}={v}"),
                    1 => format!("DEVICE_{s}_{param}='{v}'"),
                    2 => format!("DEVICE_{s}_{param}=\"{v}\""),
                    3 => format!("DEVICE_{s}_{param}={v}  # set by hand"),
                    4 if shape.is_multiple_of(5) => format!("DEVICE_{s}_{param}="),
                    5 if shape.is_multiple_of(3) => format!("DEVICE_{s}_{param}=\" {v} \""),
                    _ => format!("DEVICE_{s}_{param}={v}"),
                };
                lines.push(line);
                if rng.chance(10) {
                    // A later assignment wins, as in a shell.
                    if let Some(v) = fresh(param, &mut k, &mut used) {
                        lines.push(format!("DEVICE_{s}_{param}={v}"));
                    }
                }
            }
        }
        if rng.chance(30) {
            let s = &stems[0];
            lines.push(format!("DEVICE_{s}_VOLUME=3"));
            lines.push(format!("device_{}_codec=aac", s.to_lowercase()));
        }
    }
    if defaults {
        lines.push("DEFAULT_SAMPLE_RATE=32000".into());
        lines.push("DEFAULT_CODEC='mp3'".into());
        lines.push("DEFAULT_THREAD_QUEUE=".into());
    }
    if shape % 6 == 2 {
        lines.push("SOME_OTHER_SETTING=1".into());
    }
    let mut text = lines.join(if shape % 4 == 3 { "\r\n" } else { "\n" });
    text.push_str(if shape % 4 == 3 { "\r\n" } else { "\n" });
    if shape % 8 == 3 || shape % 8 == 6 {
        text.insert(0, '\u{feff}');
    }
    text.into_bytes()
}

/// Files we refuse (exit 4) while bash reads or runs them.
pub fn refused_confs(devices: &[(Option<String>, String)]) -> Vec<Vec<u8>> {
    let s = candidate_stems(devices[0].0.as_deref(), &devices[0].1);
    let s = &s[0];
    vec![
        format!("DEVICE_{s}_CODEC=pcm_s16le\n").into_bytes(),
        format!("DEVICE_{s}_SAMPLE_RATE=7000\nDEVICE_{s}_CHANNELS=1\n").into_bytes(),
        format!("DEVICE_{s}_CODEC=$(echo aac)\n").into_bytes(),
        format!("DEVICE_{s}_CHANNELS=1; DEVICE_{s}_CODEC=aac\n").into_bytes(),
    ]
}

/// `v` as our SPEC §5 validators would hold it (trimmed; codec lowercase; numbers parsed).
pub fn normalised(param: &str, v: &str) -> Option<String> {
    let t = v.trim();
    match param {
        "CODEC" => {
            let l = t.to_ascii_lowercase();
            ["opus", "aac", "mp3", "pcm"]
                .contains(&l.as_str())
                .then_some(l)
        }
        "BITRATE" => (!t.is_empty()).then(|| t.to_string()),
        _ => t.parse::<u32>().ok().map(|n| n.to_string()),
    }
}
