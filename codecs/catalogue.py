"""The built-in codecs and systems, listed explicitly: name -> "module:Class" (imported only when used).

Add a built-in one here; third-party codecs and systems use the ``codecbench.codecs`` entry-point group instead.
"""

BUILTIN_CODECS: dict[str, str] = {
    # BS.1534-3 anchors (evaluation-rate, no weights)
    "reference": "codecbench.codecs.anchors:HiddenReference",
    "lowpass_3k5": "codecbench.codecs.anchors:LowPass3k5",
    "lowpass_7k": "codecbench.codecs.anchors:LowPass7k",
    # classic codecs through PyAV's bundled FFmpeg (no weights)
    "opus": "codecbench.codecs.classic:Opus",
    "mp3": "codecbench.codecs.classic:Mp3",
    "aac": "codecbench.codecs.classic:Aac",
    # decoded outputs made elsewhere (rates declared in each folder's codecbench.yaml)
    "precomputed": "codecbench.codecs.precomputed:PrecomputedFolders",
    # neural codecs (official packages; bitrates computed from the codes they produce)
    "encodec_24khz": "codecbench.codecs.encodec_codec:Encodec24kHz",
    "encodec_48khz": "codecbench.codecs.encodec_codec:Encodec48kHz",
    "dac_16khz": "codecbench.codecs.dac_codec:Dac16kHz",
    "dac_24khz": "codecbench.codecs.dac_codec:Dac24kHz",
    "dac_44khz": "codecbench.codecs.dac_codec:Dac44kHz",
    "semanticodec": "codecbench.codecs.semanticodec_codec:SemantiCodec",
    # continuous baselines (compression ratio and latent frame rate instead of kbps)
    "music2latent": "codecbench.codecs.music2latent_codec:Music2Latent",
    # S-PRESSO continuous (stage-1 model, z as latents; models trained here)
    "spresso": "codecbench.codecs.spresso.codec:SPressoCodec",
    # S-PRESSO discrete (stage-1/3 model + offline QINCo2 codes; models trained here)
    "spresso_discrete": "codecbench.codecs.spresso.discrete:SPressoDiscreteCodec",
}
