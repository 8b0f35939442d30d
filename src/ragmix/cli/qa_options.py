"""``eval qa``'s -m and --decoding: generation modes and decodings as ``ask`` names them,
crossed into the runs the evaluation compares (MODE[-DECODING], see ragmix.modes)."""

from __future__ import annotations

import click

from ragmix.modes import (
    ASK_DECODINGS,
    GENERATION_MODES,
    MODE_DECODINGS,
    QA_MODES,
    qa_mode_name,
    split_qa_mode,
)

# eval qa's -m took MODE-DECODING names before it had --decoding; they still work, warned.
OLD_QA_NAMES = tuple(name for name in QA_MODES if name not in GENERATION_MODES)


class _GenerationMode(click.Choice):
    """A generation mode, or one of the old one-word names (accepted, not listed)."""

    def convert(self, value, param, ctx):
        return value if value in OLD_QA_NAMES else super().convert(value, param, ctx)


qa_mode_option = click.option(
    "--mode", "-m", "modes", type=_GenerationMode(GENERATION_MODES), multiple=True,
    help="How the generator uses the passages, as ask --mode; repeat to compare several "
         "[default: stuff].")
qa_decoding_option = click.option(
    "--decoding", "decodings", type=click.Choice(ASK_DECODINGS), multiple=True,
    help="How the modes decode, as ask --decoding; repeat to compare several. Each --mode "
         "runs with every decoding it has: grounded (stuff, rag-sequence), free (all; "
         "thorough for rag-sequence), thorough and fast (rag-sequence) [default: as ask: "
         "grounded for stuff and rag-sequence, free for rag-token. Changed: eval qa used to "
         "decode them freely; give --decoding free for that].")


def qa_runs(modes: tuple[str, ...], decodings: tuple[str, ...]) -> list[str]:
    """The runs (MODE[-DECODING] names) of eval qa's -m and --decoding: every mode with
    each decoding it has, or ask's default decoding; a decoding no mode has is refused."""
    old = [name for name in modes if name in OLD_QA_NAMES]
    if old and decodings:
        raise click.UsageError(f"-m {old[0]} names its decoding already; with --decoding give "
                               f"the mode alone (-m {split_qa_mode(old[0])[0]})")
    if old:
        click.echo("; ".join("-m {} is now -m {} --decoding {}".format(name, *split_qa_mode(name))
                             for name in old), err=True)
    modes = modes or ("stuff",)
    for decoding in decodings:
        if not any(decoding in MODE_DECODINGS[mode] for mode in modes):
            having = [mode for mode in GENERATION_MODES if decoding in MODE_DECODINGS[mode]]
            raise click.UsageError(f"--decoding {decoding} fits none of -m {', '.join(modes)}; "
                                   f"it works with -m {' or '.join(having)}")
    names = []
    for mode in modes:
        if mode in OLD_QA_NAMES:
            names.append(mode)
        elif not decodings:
            names.append(qa_mode_name(mode))
        else:
            names += [qa_mode_name(mode, d) for d in decodings if d in MODE_DECODINGS[mode]]
    return list(dict.fromkeys(names))
