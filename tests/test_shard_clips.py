"""Small real clips for the shard/decode tests, made with the ffmpeg binary (lavfi sources),
including every bad-input kind `avloc shard` must survive. The tests here check that each
maker produces what it claims, so a failing shard test never hides a broken fixture."""

from __future__ import annotations

import subprocess
from pathlib import Path

import numpy as np

from avloc.ffmpeg_bin import ffmpeg_exe


def make_clip(path, *, duration: float = 4.0, size=(160, 120), fps: int = 25, video: bool = True, audio: bool = True,
              sample_rate: int = 16000, channels: int = 1, audio_duration=None, silent: bool = False,
              frequency: float = 440.0, vfr: bool = False, rotation=None, extra_video_args=(),
              video_codec: str = "libx264", audio_codec: str = "aac") -> Path:
    """A clip from lavfi testsrc (+ sine, or silence). ``rotation`` adds a display matrix by a
    stream copy; ``vfr`` changes the frame spacing half way."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    w, h = size
    args = [ffmpeg_exe(), "-hide_banner", "-loglevel", "error", "-nostdin", "-y"]
    if video:
        args += ["-f", "lavfi", "-i", f"testsrc=size={w}x{h}:rate={fps}:duration={duration}"]
    if audio:
        a_dur = audio_duration or duration
        if silent:
            src = f"anullsrc=r={sample_rate}:cl={'mono' if channels == 1 else 'stereo'}:d={a_dur}"
        else:
            src = f"sine=frequency={frequency}:sample_rate={sample_rate}:duration={a_dur}"
        args += ["-f", "lavfi", "-i", src]
    if video:
        pix = "yuv420p" if w % 2 == 0 and h % 2 == 0 else "yuv444p"
        if video_codec == "libx264":
            args += ["-c:v", "libx264", "-preset", "ultrafast", "-pix_fmt", pix, *extra_video_args]
        else:
            args += ["-c:v", video_codec, "-deadline", "realtime", "-cpu-used", "8", "-b:v", "200k", "-pix_fmt", pix,
                     *extra_video_args]
        if vfr:
            half = int(duration * fps / 2)
            args += ["-vf", f"setpts='if(lt(N,{half}),N/{fps},{half / fps}+(N-{half})/{fps / 2.5})/TB'", "-fps_mode", "vfr"]
    if audio:
        args += ["-c:a", audio_codec, "-ac", str(channels)]
        if silent:
            args += ["-t", str(audio_duration or duration)]
    target = path if rotation is None else path.with_name(path.stem + ".norot" + path.suffix)
    subprocess.run(args + [str(target)], check=True)
    if rotation is not None:
        subprocess.run([ffmpeg_exe(), "-hide_banner", "-loglevel", "error", "-nostdin", "-y", "-display_rotation",
                        str(rotation), "-i", str(target), "-c", "copy", str(path)], check=True)
        target.unlink()
    return path


def make_long_clip(path, seconds: float = 1200.0) -> Path:
    """A long clip made cheaply: 64x48 H.264 at 1 fps and uncompressed 16 kHz mono audio (a 440 Hz
    tone, a 1 kHz tone from the middle on, so a misplaced window shows), in Matroska."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    half = seconds / 2
    subprocess.run([ffmpeg_exe(), "-hide_banner", "-loglevel", "error", "-nostdin", "-y",
                    "-f", "lavfi", "-i", f"testsrc=size=64x48:rate=1:duration={seconds}",
                    "-f", "lavfi", "-i", f"aevalsrc='0.5*sin(2*PI*if(lt(t,{half}),440,1000)*t)':s=16000:d={seconds}",
                    "-c:v", "libx264", "-preset", "ultrafast", "-g", "30", "-c:a", "pcm_s16le", str(path)], check=True)
    return path


def make_bad_inputs(clips: Path) -> dict:
    """One clip per bad-input kind (plus two good ones). Returns {kind: path}."""
    clips = Path(clips)
    clips.mkdir(parents=True, exist_ok=True)
    made = {
        "good": make_clip(clips / "goodclip001_000010.mp4"),
        "good_stereo_44k": make_clip(clips / "sub" / "goodclip002_000020.mkv", sample_rate=44100, channels=2),
        "no_audio": make_clip(clips / "noaudio0001_000000.mp4", audio=False),
        "no_video": make_clip(clips / "novideo0001_000000.mp4", video=False),
        "short_audio": make_clip(clips / "shortaudio1_000000.mp4", audio_duration=1.2),
        "silent": make_clip(clips / "silentaudio_000000.mp4", silent=True),
        "odd_resolution": make_clip(clips / "oddsize0001_000000.mp4", size=(161, 121)),
        "tiny_resolution": make_clip(clips / "tinysize001_000000.mp4", size=(32, 24)),
        "two_pixels": make_clip(clips / "twopixels01_000000.mp4", size=(2, 2), duration=2.0),
        # 4 s of video, 12 s of audio: the central 3 s of audio start at 4.5 s, after the last frame
        "audio_after_video": make_clip(clips / "longaudio01_000000.mp4", audio_duration=12.0),
        "rotated": make_clip(clips / "rotated0001_000000.mp4", rotation=90),
        "vfr": make_clip(clips / "vfrclip0001_000000.mp4", vfr=True),
        "non_ascii": make_clip(clips / "café ünïcödé clip.mp4"),
    }
    zero = clips / "zerobytes01_000000.mp4"
    zero.write_bytes(b"")
    made["zero_bytes"] = zero
    corrupt = clips / "corruptfile_000000.mp4"
    corrupt.write_bytes(np.random.default_rng(0).integers(0, 256, 20000, dtype=np.uint8).tobytes())
    made["corrupt"] = corrupt
    # a truncated mp4: header promises data that is not there
    truncated = clips / "truncated01_000000.mp4"
    truncated.write_bytes(made["good"].read_bytes()[:3000])
    made["truncated"] = truncated
    # a faststart mp4 (index first) cut at 95 %: every frame header is there, the last packets are not
    faststart = make_clip(clips / "cutfaststart_000000.mp4", duration=6.0, extra_video_args=("-movflags", "+faststart"))
    data = faststart.read_bytes()
    faststart.write_bytes(data[:int(len(data) * 0.95)])
    made["cut_at_95"] = faststart
    # the same clip id twice: a canonical mp4 and a <ytid>_<start_ms>_<end_ms> webm-named copy
    dup_kept = make_clip(clips / "duplicate01_000030.mp4", frequency=880.0)
    dup_other = clips / "other" / "duplicate01_30000_40000.mkv"
    dup_other.parent.mkdir(exist_ok=True)
    dup_other.write_bytes(dup_kept.read_bytes())
    made["duplicate_kept"], made["duplicate_dropped"] = dup_kept, dup_other
    # unreadable: a dangling link (works even as root, where permission bits do not stop reads)
    dangling = clips / "danglinglnk_000000.mp4"
    dangling.symlink_to(clips / "does-not-exist.mp4")
    made["unreadable"] = dangling
    return made


def test_makers_produce_what_they_claim(tmp_path):
    import av

    made = {
        "plain": make_clip(tmp_path / "a.mp4", duration=2.0),
        "no_audio": make_clip(tmp_path / "b.mp4", duration=2.0, audio=False),
        "no_video": make_clip(tmp_path / "c.mp4", duration=2.0, video=False),
        "rotated": make_clip(tmp_path / "d.mp4", duration=2.0, rotation=90),
        "vfr": make_clip(tmp_path / "e.mp4", duration=2.0, vfr=True),
        "odd": make_clip(tmp_path / "f.mp4", duration=2.0, size=(161, 121)),
        "two_pixels": make_clip(tmp_path / "g.mp4", duration=2.0, size=(2, 2)),
        "long_audio": make_clip(tmp_path / "h.mp4", duration=2.0, audio_duration=6.0),
    }
    with av.open(str(made["plain"])) as c:
        assert len(c.streams.video) == 1 and len(c.streams.audio) == 1
        assert c.streams.audio[0].codec_context.name == "aac"
    with av.open(str(made["no_audio"])) as c:
        assert len(c.streams.audio) == 0 and len(c.streams.video) == 1
    with av.open(str(made["no_video"])) as c:
        assert len(c.streams.video) == 0 and len(c.streams.audio) == 1
    with av.open(str(made["rotated"])) as c:
        frame = next(c.decode(video=0))
        assert round(frame.rotation) in (90, -270)
    with av.open(str(made["vfr"])) as c:
        times = [f.time for f in c.decode(video=0)]
    gaps = np.round(np.diff(times), 4)
    assert len(set(gaps.tolist())) >= 2, gaps
    with av.open(str(made["odd"])) as c:
        assert (c.streams.video[0].codec_context.width, c.streams.video[0].codec_context.height) == (161, 121)
    with av.open(str(made["two_pixels"])) as c:
        assert (c.streams.video[0].codec_context.width, c.streams.video[0].codec_context.height) == (2, 2)
    with av.open(str(made["long_audio"])) as c:
        video, audio = c.streams.video[0], c.streams.audio[0]
        assert float(video.duration * video.time_base) < 2.5 and float(audio.duration * audio.time_base) > 5.5
