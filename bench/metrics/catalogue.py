"""The built-in metrics, listed explicitly: name -> "module:Class" (imported only when used)."""

BUILTIN_METRICS: dict[str, str] = {
    "si_sdr": "codecbench.bench.metrics.si_sdr:SISDR",
    "mel_distance": "codecbench.bench.metrics.mel_distance:MelDistance",
    "fad_logmel": "codecbench.bench.metrics.distribution:FadLogMel",
    "fad_inf_logmel": "codecbench.bench.metrics.distribution:FadInfLogMel",
    "kad_logmel": "codecbench.bench.metrics.distribution:KadLogMel",
    "stft_distance": "codecbench.bench.metrics.stft_distance:STFTDistance",
    "pesq_wb": "codecbench.bench.metrics.pesq_metric:PesqWideband",
    "pesq_nb": "codecbench.bench.metrics.pesq_metric:PesqNarrowband",
    "stoi": "codecbench.bench.metrics.stoi:STOI",
    "clap_similarity": "codecbench.bench.metrics.model_metrics:ClapSimilarity",
    "fad_clap": "codecbench.bench.metrics.model_metrics:FadClap",
    "kad_clap": "codecbench.bench.metrics.model_metrics:KadClap",
    "fad_encodec": "codecbench.bench.metrics.model_metrics:FadEncodec",
    "fad_pann": "codecbench.bench.metrics.model_metrics:FadPann",
    "fad_vggish": "codecbench.bench.metrics.model_metrics:FadVggish",
    "kad_vggish": "codecbench.bench.metrics.model_metrics:KadVggish",
    "aisfx_similarity": "codecbench.bench.metrics.aisfx:AisfxSimilarity",
    "fad_aisfx": "codecbench.bench.metrics.aisfx:FadAisfx",
    "kad_aisfx": "codecbench.bench.metrics.aisfx:KadAisfx",
}
