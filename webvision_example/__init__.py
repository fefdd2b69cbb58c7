"""A small generated dataset in WebVision's release format, for demos, tests and benchmarks.

Not part of the pipeline: nothing in text_mining, pipeline, pretrain or finetune imports it; the
tests, bench/ and scripts/quickstart.sh do. ``make_example(out, ...)`` (CLI: ``python -m
webvision_example --out DIR``) writes a release that the rest of webtag reads like the real
WebVision 1.0 or 2.0:

* classes are real WordNet 3.0 noun synsets (leaves under concrete, visual roots such as
  dog.n.01, bird.n.01, edible_fruit.n.01, musical_instrument.n.01), drawn by seed (classes.py);
* 1 or 2 search queries per class, images spread over both sources (google, flickr) (plan.py);
* one metadata JSON list per (source, query), with messy web text: about 70% of the records
  talk about their own class, the rest about another class or nothing in particular (label
  noise), with HTML entities, raw tags, URLs, e-mail addresses, hashtags, camera boilerplate,
  other languages, emoji, missing keys and nulls; some rows are downloads that failed (no image
  refers to them) (text.py, the word tables in words/*.json);
* small JPEGs whose colours and pattern depend on the class, so a classifier can learn them;
  validation and test lists and images (images.py).

Layout (ROOT = out; ``qNNNN`` has 4 digits in 1.0, 5 in 2.0; layout.py)::

    README.txt
    info/synsets.txt                       <wnid> <words, comma separated>
    info/queries_google.txt, queries_flickr.txt (1.0) | info/queries.txt (2.0)
    info/queries_synsets_map.txt           <query id> <class index: 1-based in 1.0, 0-based in 2.0>
    info/train_filelist_{google,flickr,all}.txt   <image path> <0-based class id>
    info/train_meta_list_{google,flickr,all}.txt  <source>/qNNNN.json <1-based row>
    info/val_filelist.txt                  val000001.jpg <class id>
    info/test_filelist.txt                 test000001.jpg
    google/qNNNN/000000.jpg, flickr/qNNNN/<photo id>.jpg
    google/qNNNN.json, flickr/qNNNN.json (1.0) | meta/google/qNNNN.json, meta/flickr/... (2.0)
    val_images_256/val000001.jpg, test_images_256/test000001.jpg

Same arguments give byte-identical files. Text and lists come from ``random.Random(seed)``;
pixels from NumPy generators seeded by (seed, image), so ``images=False`` writes the same lists
and JSON as ``images=True``. The release appears under ``out`` complete or not at all
(release.py).
"""
from webvision_example.images import class_style, render_image
from webvision_example.release import make_example

__all__ = ["class_style", "make_example", "render_image"]
