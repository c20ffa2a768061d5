"""python -m isp_tf.train: train a model from its recipe.

Examples::

    # MicroISP on synthetic pairs and renders of real RAW files
    python -m isp_tf.train --model microisp --data synthetic:64 \\
        --data rendered:../shared/raw_samples --out runs/microisp

    # PyNET, stage by stage (its levels 5..0); each starts from the previous one in --out
    for k in 5 4 3 2 1 0; do
        python -m isp_tf.train --model pynet --stage $k --data zurich:/data/zurich --out runs/pynet
    done

    # continue a run that was killed, with the same step and optimizer state
    python -m isp_tf.train --out runs/microisp --resume

    # quantization-aware fine-tuning of a trained run (writes runs/microisp/qat/)
    python -m isp_tf.train --model microisp --data synthetic:64 --out runs/microisp --qat

    # GenISP through a frozen RetinaNet (a model's own flags: see --model genisp --help)
    python -m isp_tf.train --model genisp --data rawnod:/data/RAW-NOD \\
        --detector-weights retinanet_coco.h5 --out runs/genisp

Exit status: 0 on success, 2 for bad input (unknown model, bad --data spec,
missing files, weights of another model...), 1 for an unexpected failure
(one line; --debug shows the traceback), 130 when interrupted.
"""
from __future__ import annotations

import argparse
import os
import pathlib
import sys

from isp_tf.cli import add_debug_flag, run_command
from isp_tf.errors import MissingFileError

STRATEGIES = ("default", "mirrored", "multiworker")
#: flags that change what is trained; --resume refuses them (the run folder decides)
_SETTING_FLAGS = ("model", "data", "val_data", "recipe", "stage", "epochs", "steps_per_epoch",
                  "batch_size", "patch_size", "lr", "small", "seed", "init_from", "vgg",
                  "checkpoint_every", "validation_steps", "deterministic")


def build_parser() -> argparse.ArgumentParser:
    from isp_tf.models import available_models

    p = argparse.ArgumentParser(
        prog="python -m isp_tf.train", description=__doc__.split("\n\n")[0],
        epilog=__doc__.split("\n\n", 1)[1], formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--model", help=f"model to train: {', '.join(available_models())}")
    p.add_argument("--data", action="append", metavar="LAYOUT:PATH",
                   help="training data, repeatable: paired:, zurich:, fivek:, paramisp:, rendered:PATH "
                        "or synthetic[:N]")
    p.add_argument("--val-data", action="append", metavar="LAYOUT:PATH",
                   help="validation data (default: the 'val' split of --data)")
    p.add_argument("--out", required=True, metavar="RUN_DIR",
                   help="run folder (a staged method: RUN_DIR/<stage folder>, e.g. PyNET's "
                        "RUN_DIR/level_<k>; --qat: .../qat)")
    p.add_argument("--recipe", metavar="FILE",
                   help="recipe JSON (default: the model's own, isp_tf/models/<model>/recipe.json)")
    p.add_argument("--stage", "--level", dest="stage", metavar="NAME",
                   help="stage to train, for methods trained in stages (PyNET: its levels 5..0; "
                        "--level is an alias); a stage starts from the previous stage's weights in --out")
    p.add_argument("--init-from", metavar="RUN_DIR|WEIGHTS",
                   help="start from these weights (a run folder or a .weights.h5); a staged method "
                        "finds the previous stage in --out by itself")
    p.add_argument("--resume", action="store_true",
                   help="continue the run in --out from its latest checkpoint, settings as stored")
    g = p.add_argument_group("recipe overrides")
    g.add_argument("--epochs", type=int)
    g.add_argument("--steps-per-epoch", type=int)
    g.add_argument("--batch-size", type=int, help="global batch size")
    g.add_argument("--patch-size", type=int, help="RGB patch side (packed input is half)")
    g.add_argument("--lr", type=float, help="base learning rate")
    g.add_argument("--checkpoint-every", type=int, metavar="STEPS")
    g.add_argument("--validation-steps", type=int, metavar="BATCHES")
    p.add_argument("--small", action="store_true", help="the model's tiny test configuration")
    p.add_argument("--seed", type=int, default=None, help="seed of initialisation and data order (default 0)")
    p.add_argument("--strategy", choices=STRATEGIES, default="default",
                   help="tf.distribute strategy; multiworker reads TF_CONFIG")
    p.add_argument("--qat", action="store_true",
                   help="quantization-aware fine-tuning of the trained model in --out (or --init-from)")
    p.add_argument("--vgg", metavar="PATH", help="VGG-19 weights file or folder (default: vgg_pretrained/)")
    p.add_argument("--deterministic", action="store_true",
                   help="enable TensorFlow op determinism (bit-exact reruns, slower on GPU)")
    p.add_argument("--time-limit", type=float, metavar="MINUTES",
                   help="stop cleanly (checkpoint + final weights) after this many minutes")
    p.add_argument("--quiet", action="store_true", help="no progress bar")
    add_debug_flag(p)
    return p


def _add_model_options(parser, argv):
    """Add the flags of ``--model``'s own :class:`~isp_tf.models.registry.Option` s (``ModelSpec.options``)."""
    from isp_tf.models import available_models

    pre = argparse.ArgumentParser(add_help=False)
    pre.add_argument("--model")
    pre.add_argument("--resume", action="store_true")
    known, _ = pre.parse_known_args(argv)
    if not known.model or known.resume or str(known.model).lower() not in available_models():
        return ()
    from isp_tf.models import get_spec

    spec = get_spec(known.model)
    if not spec.options:
        return ()
    group = parser.add_argument_group(f"{spec.name} options")
    for option in spec.options:
        extra = " (required)" if option.required else (
            f" (default {option.default})" if option.default is not None else "")
        group.add_argument(option.flag, dest=f"option_{option.name}", type=option.type, choices=option.choices,
                           default=None, metavar=None if option.choices else option.name.upper(),
                           help=option.help + extra)
    return spec.options


def _model_options(args, parser, options):
    """``RunSettings.options`` from the parsed flags of the model's own options."""
    out = {}
    for option in options:
        value = getattr(args, f"option_{option.name}", None)
        if value is None:
            if option.required:
                parser.error(f"--model {args.model} needs {option.flag}")
            value = option.default
        if value is not None:
            out[option.name] = value
    return out


def _check_specs(specs):
    """Reject malformed LAYOUT:PATH specs before TensorFlow starts (no TF import)."""
    from isp_tf.data.layouts import parse_spec

    for spec in specs or ():
        parse_spec(spec)


def _settings_from_args(args, parser, options=()):
    from isp_tf.models import get_spec
    from isp_tf.train.recipe import qat_recipe, resolve_recipe
    from isp_tf.train.trainer import FINAL_WEIGHTS, RunSettings

    def _check_patch_size(spec, patch_size, config):
        """Refuse a patch the model's forward contract cannot take (InputShapeError naming --patch-size).

        The model input side is the patch (half of it for packed Bayer); it must be a multiple of the
        direction's ``size_multiple`` and large enough for the model to build at that shape.
        """
        from isp_tf.errors import InputShapeError

        forward = spec.forward
        port = forward.inputs[0]
        factor = 2 if port.kind == "packed_bayer" else 1
        step = factor * max(1, int(forward.size_multiple or 1))  # valid patches are multiples of this
        side = patch_size // factor
        if patch_size % step:
            lower = (patch_size // step) * step
            upper = lower + step
            nearest = " or ".join(str(v) for v in (lower, upper) if v > 0)
            raise InputShapeError(
                f"--patch-size {patch_size} does not fit {spec.name}: its "
                f"{'packed ' if factor == 2 else ''}input ({side} px) must be a multiple of "
                f"{forward.size_multiple}, i.e. the patch a multiple of {step}; use --patch-size {nearest}")

        def builds(patch):
            try:
                from isp_tf.models import create_model

                create_model(spec.name, **config, input_shape=(patch // factor, patch // factor, port.channels))
            except InputShapeError:
                return False
            except TypeError:  # a builder without input_shape: nothing more to check here
                return True
            return True

        if builds(patch_size):
            return
        good = patch_size
        for _ in range(8):  # find a patch that builds, then the smallest one above patch_size
            good *= 2
            if builds(good):
                break
        else:
            raise InputShapeError(f"--patch-size {patch_size} is too small for {spec.name}; use a larger --patch-size")
        bad = patch_size
        while good - bad > step:
            mid = (bad + good) // 2 // step * step
            if mid <= bad:
                break
            if builds(mid):
                good = mid
            else:
                bad = mid
        raise InputShapeError(
            f"--patch-size {patch_size} is too small for {spec.name} (model input {side} px); "
            f"the smallest valid --patch-size is {good}")

    if not args.model or not args.data:
        parser.error("--model and --data are required (unless --resume)")
    spec = get_spec(args.model)
    out = pathlib.Path(args.out)
    overrides = dict(epochs=args.epochs, steps_per_epoch=args.steps_per_epoch, batch_size=args.batch_size,
                     patch_size=args.patch_size, learning_rate=args.lr, checkpoint_every=args.checkpoint_every,
                     validation_steps=args.validation_steps)
    recipe = resolve_recipe(spec.name, stage=args.stage, path=args.recipe,
                            overrides=None if args.qat else overrides)
    stage = None if recipe.stage is None else spec.stage(recipe.stage)
    run_dir = out if stage is None else out / (stage.folder or stage.name)
    init_from = args.init_from
    if args.qat:
        init_from = init_from or str(run_dir)
        run_dir = run_dir / "qat"
        recipe = qat_recipe(recipe, overrides)
    elif stage is not None and stage.starts_from_previous and not init_from:
        before = spec.previous_stage(stage.name)
        previous = out / (before.folder or before.name)
        if not (previous / FINAL_WEIGHTS).is_file():
            raise MissingFileError(
                f"{spec.name} stage {stage.name} starts from stage {before.name}'s weights, "
                f"which are not in {previous}: train --stage {before.name} with the same --out "
                f"first, or pass --init-from")
        init_from = str(previous)
    if args.init_from:  # a missing, damaged or foreign weights file fails now, before run.json is written
        from isp_tf.errors import WeightsMismatchError
        from isp_tf.models.weights import find_weights, read_header

        stored, _ = read_header(find_weights(args.init_from))
        if stored is not None and stored != spec.name:
            raise WeightsMismatchError(f"--init-from {args.init_from} holds weights of model {stored!r}, "
                                       f"not of model {spec.name!r}")
    if "vgg" in recipe.loss:  # fail now, not after the model is built
        from isp_tf.losses.vgg import find_vgg_weights

        find_vgg_weights(args.vgg)
    config = dict(spec.small_config if args.small else spec.default_config)
    for key in (stage.config if stage is not None else {}):
        config.pop(key, None)  # the stage decides (see trainer.stage_config)
    if spec.dataset is None:  # the spec's own dataset decides its own shapes
        _check_patch_size(spec, recipe.patch_size,
                          dict(config, **(stage.config if stage is not None else {})))
    settings = RunSettings(model=spec.name, model_config=config, data=list(args.data), recipe=recipe,
                           val_data=list(args.val_data) if args.val_data else None,
                           seed=0 if args.seed is None else args.seed, small=args.small, init_from=init_from,
                           qat=args.qat, vgg=args.vgg, deterministic=args.deterministic,
                           options=_model_options(args, parser, options))
    return settings, run_dir


def _resume_dir(args) -> pathlib.Path:
    """--out is the run folder itself (a stage's: RUN_DIR/<stage folder>); --qat: its qat/."""
    out = pathlib.Path(args.out)
    return out / "qat" if args.qat else out


def main(argv=None, callbacks=()) -> int:
    parser = build_parser()
    options = _add_model_options(parser, sys.argv[1:] if argv is None else argv)
    args = parser.parse_args(argv)
    if args.qat:  # tfmot's fake-quant convolutions crash oneDNN's strided 1x1 kernels
        os.environ.setdefault("TF_ENABLE_ONEDNN_OPTS", "0")
    if args.resume:
        given = [f"--{k.replace('_', '-')}" for k in _SETTING_FLAGS
                 if getattr(args, k) not in (None, False)]
        if given:
            parser.error(f"--resume continues the run as stored in its run.json; drop {', '.join(given)}")

    def body() -> int:
        _check_specs(args.data)
        _check_specs(args.val_data)
        from isp_tf.train.trainer import make_strategy, read_run, train

        strategy = make_strategy(args.strategy)  # before any other TensorFlow work
        if args.resume:
            run_dir = _resume_dir(args)
            settings = read_run(run_dir)
        else:
            settings, run_dir = _settings_from_args(args, parser, options)
        result = train(settings, run_dir, strategy=strategy, resume=args.resume,
                       callbacks=callbacks, verbose=0 if args.quiet else 1,
                       time_limit=None if args.time_limit is None else 60.0 * args.time_limit)
        if result.history and not args.quiet:
            last = result.history[-1]
            print("final: " + "  ".join(f"{k} {v:.4f}" for k, v in last.items() if k.startswith("val_")))
        return 0

    return run_command(body, debug=args.debug, interrupted="interrupted; continue with --resume",
                       wrapped_hint=" (checkpoints kept; fix the file, then continue with --resume)")


if __name__ == "__main__":
    sys.exit(main())
