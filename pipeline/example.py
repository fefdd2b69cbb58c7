"""A small generated dataset in WebVision's release format, for tests, demos and smoke runs.

``make_example(out, ...)`` (CLI: ``python -m pipeline example --out DIR``) writes a release that
the rest of webtag reads like the real WebVision 1.0 or 2.0:

* classes are real WordNet 3.0 noun synsets (leaves under concrete, visual roots such as
  dog.n.01, bird.n.01, edible_fruit.n.01, musical_instrument.n.01), drawn by seed;
* 1 or 2 search queries per class, images spread over both sources (google, flickr);
* one metadata JSON list per (source, query), with messy web text: about 70% of the records
  talk about their own class, the rest about another class or nothing in particular (label
  noise), with HTML entities, raw tags, URLs, e-mail addresses, hashtags, camera boilerplate,
  other languages, emoji, missing keys and nulls; some rows are downloads that failed (no image
  refers to them);
* small JPEGs whose colours and pattern depend on the class, so a classifier can learn them;
* validation and test lists and images.

Layout (ROOT = out; ``qNNNN`` has 4 digits in 1.0, 5 in 2.0)::

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
and JSON as ``images=True``. The release is written in a hidden sibling folder renamed to
``out`` at the end: a killed run leaves nothing under ``out``'s name.
"""
from __future__ import annotations

import colorsys
import functools
import json
import logging
import math
import os
import random
import shutil
import uuid
import warnings
from dataclasses import dataclass
from pathlib import Path

import numpy as np

log = logging.getLogger(__name__)

VERSIONS = ("1.0", "2.0")
SOURCES = ("google", "flickr")
TEST_PER_CLASS = 2
OWN_TEXT = 0.70          # share of images whose text is about their own class
OTHER_CLASS_TEXT = 0.15  # ... about another class; the rest is generic
FAILED_ROWS = 0.10       # metadata records with no image (failed downloads)
MIN_SIDE, MAX_SIDE = 64, 400
VAL_SIDE = 256

# --------------------------------------------------------------------------------------------
# Vocabulary
# --------------------------------------------------------------------------------------------

# Per group of roots: adjectives and context nouns that web text puts next to such things.
GROUPS = {
    "pet": (["cute", "adorable", "happy", "sleepy", "funny", "little", "fluffy", "young", "old",
             "black", "white", "brown", "golden", "lovely", "sweet", "beautiful", "best"],
            ["park", "backyard", "home", "couch", "garden", "beach", "snow", "living room",
             "dog show", "walk", "grass", "bed"]),
    "wild": (["wild", "beautiful", "rare", "amazing", "small", "big", "colorful", "young",
              "red", "green", "brown", "spotted", "huge", "tiny", "stunning"],
             ["zoo", "forest", "nature", "safari", "lake", "field", "garden", "park", "jungle",
              "wildlife refuge", "tree", "branch", "meadow", "national park", "mountains"]),
    "water": (["colorful", "big", "small", "rare", "beautiful", "fresh", "blue", "silver",
               "striped", "tropical", "giant", "amazing", "red", "yellow"],
              ["aquarium", "sea", "ocean", "reef", "river", "lake", "fishing trip", "beach",
               "market", "underwater", "pond", "harbor"]),
    "plant": (["beautiful", "red", "yellow", "white", "pink", "purple", "green", "blooming",
               "wild", "tall", "old", "lovely", "fresh", "spring", "tiny", "huge"],
              ["garden", "park", "forest", "botanical garden", "spring", "greenhouse", "meadow",
               "backyard", "roadside", "hills", "window", "balcony"]),
    "food": (["delicious", "fresh", "homemade", "sweet", "ripe", "organic", "healthy", "red",
              "green", "yellow", "tasty", "easy", "best", "traditional", "yummy"],
             ["kitchen", "restaurant", "table", "market", "bakery", "dinner", "breakfast",
              "lunch", "recipe", "farmers market", "plate", "picnic"]),
    "vehicle": (["old", "new", "classic", "vintage", "red", "black", "white", "blue", "fast",
                 "big", "rusty", "restored", "custom", "beautiful", "used"],
                ["street", "road", "highway", "car show", "parking lot", "city", "harbor",
                 "airport", "museum", "countryside", "garage", "race"]),
    "object": (["old", "new", "vintage", "antique", "wooden", "metal", "black", "white", "red",
                "small", "large", "handmade", "used", "modern", "classic", "cheap"],
               ["table", "home", "shop", "store", "workshop", "museum", "studio", "office",
                "flea market", "kitchen", "garage", "ebay"]),
    "building": (["old", "historic", "beautiful", "modern", "ancient", "white", "tall", "famous",
                  "abandoned", "small", "big", "medieval"],
                 ["city", "downtown", "old town", "village", "sunset", "countryside", "night",
                  "street", "river", "hill", "square", "winter"]),
    "clothing": (["new", "vintage", "black", "white", "red", "blue", "pink", "leather", "cotton",
                  "cute", "elegant", "cheap", "designer", "fashionable", "warm"],
                 ["store", "fashion show", "wedding", "street style", "shop", "party", "runway",
                  "outfit", "winter", "summer", "sale", "catalog"]),
}

# Roots of the class pool, the more specific first (a leaf takes the first root it is under):
# (synset, group, words that web text uses for the kind, the same in de/fr/es/ja/ru).
ROOTS = [
    ("dog.n.01", "pet", ["dog", "puppy", "dogs"], ["Hund", "chien", "perro", "犬", "собака"]),
    ("feline.n.01", "pet", ["cat", "kitten", "cats"], ["Katze", "chat", "gato", "猫", "кошка"]),
    ("bear.n.01", "wild", ["bear", "animal"], ["Bär", "ours", "oso", "クマ", "медведь"]),
    ("whale.n.02", "water", ["whale", "sea life"], ["Wal", "baleine", "ballena", "クジラ", "кит"]),
    ("shark.n.01", "water", ["shark", "fish"], ["Hai", "requin", "tiburón", "サメ", "акула"]),
    ("fish.n.01", "water", ["fish", "fishing"], ["Fisch", "poisson", "pez", "魚", "рыба"]),
    ("bird.n.01", "wild", ["bird", "birds", "birding"], ["Vogel", "oiseau", "pájaro", "鳥", "птица"]),
    ("snake.n.01", "wild", ["snake", "reptile"], ["Schlange", "serpent", "serpiente", "蛇", "змея"]),
    ("lizard.n.01", "wild", ["lizard", "reptile"], ["Eidechse", "lézard", "lagarto", "トカゲ", "ящерица"]),
    ("turtle.n.02", "wild", ["turtle", "reptile"], ["Schildkröte", "tortue", "tortuga", "亀", "черепаха"]),
    ("frog.n.01", "wild", ["frog", "amphibian"], ["Frosch", "grenouille", "rana", "カエル", "лягушка"]),
    ("butterfly.n.01", "wild", ["butterfly", "insect"],
     ["Schmetterling", "papillon", "mariposa", "蝶", "бабочка"]),
    ("beetle.n.01", "wild", ["beetle", "bug", "insect"], ["Käfer", "scarabée", "escarabajo", "甲虫", "жук"]),
    ("insect.n.01", "wild", ["insect", "bug", "macro"], ["Insekt", "insecte", "insecto", "昆虫", "насекомое"]),
    ("arachnid.n.01", "wild", ["spider", "arachnid"], ["Spinne", "araignée", "araña", "蜘蛛", "паук"]),
    ("crustacean.n.01", "water", ["crab", "crustacean", "seafood"],
     ["Krebs", "crabe", "cangrejo", "蟹", "краб"]),
    ("mollusk.n.01", "water", ["shell", "snail", "mollusk"],
     ["Muschel", "coquillage", "concha", "貝", "ракушка"]),
    ("primate.n.02", "wild", ["monkey", "primate", "ape"], ["Affe", "singe", "mono", "猿", "обезьяна"]),
    ("rodent.n.01", "wild", ["rodent", "mouse", "animal"], ["Maus", "souris", "ratón", "ネズミ", "мышь"]),
    ("ungulate.n.01", "wild", ["animal", "mammal", "wildlife"],
     ["Tier", "animal", "animal", "動物", "животное"]),
    ("edible_fruit.n.01", "food", ["fruit", "fruits"], ["Obst", "fruit", "fruta", "果物", "фрукты"]),
    ("vegetable.n.01", "food", ["vegetable", "veggies"], ["Gemüse", "légume", "verdura", "野菜", "овощи"]),
    ("cactus.n.01", "plant", ["cactus", "succulent"], ["Kaktus", "cactus", "cactus", "サボテン", "кактус"]),
    ("flower.n.01", "plant", ["flower", "flowers", "plant"], ["Blume", "fleur", "flor", "花", "цветок"]),
    ("tree.n.01", "plant", ["tree", "trees", "plant"], ["Baum", "arbre", "árbol", "木", "дерево"]),
    ("fungus.n.01", "plant", ["mushroom", "fungi"], ["Pilz", "champignon", "hongo", "キノコ", "гриб"]),
    ("car.n.01", "vehicle", ["car", "auto", "cars"], ["Auto", "voiture", "coche", "車", "машина"]),
    ("truck.n.01", "vehicle", ["truck", "vehicle"], ["Lastwagen", "camion", "camión", "トラック", "грузовик"]),
    ("motor_vehicle.n.01", "vehicle", ["vehicle", "car"],
     ["Fahrzeug", "véhicule", "vehículo", "車両", "автомобиль"]),
    ("aircraft.n.01", "vehicle", ["plane", "aircraft", "aviation"],
     ["Flugzeug", "avion", "avión", "飛行機", "самолёт"]),
    ("vessel.n.02", "vehicle", ["boat", "ship"], ["Boot", "bateau", "barco", "船", "лодка"]),
    ("bicycle.n.01", "vehicle", ["bike", "bicycle"], ["Fahrrad", "vélo", "bicicleta", "自転車", "велосипед"]),
    ("musical_instrument.n.01", "object", ["instrument", "music"],
     ["Instrument", "instrument", "instrumento", "楽器", "инструмент"]),
    ("knife.n.01", "object", ["knife", "blade"], ["Messer", "couteau", "cuchillo", "ナイフ", "нож"]),
    ("hand_tool.n.01", "object", ["tool", "tools"],
     ["Werkzeug", "outil", "herramienta", "工具", "инструменты"]),
    ("kitchen_utensil.n.01", "object", ["kitchen", "utensil", "cookware"],
     ["Küche", "cuisine", "cocina", "台所", "кухня"]),
    ("tableware.n.01", "object", ["tableware", "dishes"],
     ["Geschirr", "vaisselle", "vajilla", "食器", "посуда"]),
    ("seat.n.03", "object", ["chair", "seat", "furniture"], ["Stuhl", "chaise", "silla", "椅子", "стул"]),
    ("furniture.n.01", "object", ["furniture", "interior"], ["Möbel", "meubles", "muebles", "家具", "мебель"]),
    ("bridge.n.01", "building", ["bridge"], ["Brücke", "pont", "puente", "橋", "мост"]),
    ("tower.n.01", "building", ["tower"], ["Turm", "tour", "torre", "塔", "башня"]),
    ("building.n.01", "building", ["building", "architecture"],
     ["Gebäude", "bâtiment", "edificio", "建物", "здание"]),
    ("footwear.n.02", "clothing", ["shoes", "footwear"], ["Schuhe", "chaussures", "zapatos", "靴", "обувь"]),
    ("headdress.n.01", "clothing", ["hat", "headwear"], ["Hut", "chapeau", "sombrero", "帽子", "шляпа"]),
    ("clothing.n.01", "clothing", ["clothes", "fashion", "dress"],
     ["Kleidung", "vêtements", "ropa", "服", "одежда"]),
    ("bag.n.01", "clothing", ["bag", "handbag"], ["Tasche", "sac", "bolso", "バッグ", "сумка"]),
    ("bottle.n.01", "object", ["bottle", "glass"], ["Flasche", "bouteille", "botella", "ボトル", "бутылка"]),
    ("ball.n.01", "object", ["ball", "sports"], ["Ball", "ballon", "pelota", "ボール", "мяч"]),
    ("sports_equipment.n.01", "object", ["sports", "equipment"],
     ["Sport", "sport", "deporte", "スポーツ", "спорт"]),
    ("toy.n.01", "object", ["toy", "toys", "kids"], ["Spielzeug", "jouet", "juguete", "おもちゃ", "игрушка"]),
    ("home_appliance.n.01", "object", ["appliance", "home"],
     ["Haushaltsgerät", "appareil", "electrodoméstico", "家電", "техника"]),
    ("timepiece.n.01", "object", ["clock", "watch", "time"], ["Uhr", "horloge", "reloj", "時計", "часы"]),
    ("lamp.n.01", "object", ["lamp", "light", "lighting"], ["Lampe", "lampe", "lámpara", "ランプ", "лампа"]),
    ("computer.n.01", "object", ["computer", "tech"],
     ["Computer", "ordinateur", "computadora", "コンピュータ", "компьютер"]),
    ("cake.n.03", "food", ["cake", "dessert"], ["Kuchen", "gâteau", "pastel", "ケーキ", "торт"]),
    ("baked_goods.n.01", "food", ["bread", "bakery", "pastry"], ["Brot", "pain", "pan", "パン", "хлеб"]),
    ("cheese.n.01", "food", ["cheese", "food"], ["Käse", "fromage", "queso", "チーズ", "сыр"]),
    ("sandwich.n.01", "food", ["sandwich", "lunch"],
     ["Sandwich", "sandwich", "bocadillo", "サンドイッチ", "бутерброд"]),
    ("dish.n.02", "food", ["food", "dish", "recipe"], ["Essen", "plat", "comida", "料理", "еда"]),
]

BOILERPLATE = ["photo", "image", "picture", "free", "stock", "flickr", "wallpaper", "jpg", "HD",
               "download", "pics", "photography", "royalty free", "high resolution", "stock photo",
               "clipart", "images", "pictures", "wallpapers", "desktop background", "free download",
               "1080p", "photos", "photo gallery", "stock image", "vector", "hd wallpaper"]
FLICKR_TAGS = ["nikon", "canon", "explore", "flickr", "d90", "bokeh", "macro", "nature",
               "iphoneography", "instagram", "sony", "50mm", "hdr", "naturesfinest",
               "supershot", "abigfave", "photography", "travel", "geotagged", "color", "lumix"]
CAMERAS = ["Canon EOS 5D Mark II", "Nikon D90", "Nikon D7000", "Canon PowerShot SX130",
           "iPhone 5", "Sony Alpha a6000", "Olympus E-M5", "Fujifilm X100", "Samsung Galaxy S4",
           "Pentax K-5", "Canon EOS 450D", "Panasonic Lumix DMC-FZ200"]
FOREIGN = ["schön", "Garten", "Bild", "Foto", "mit", "und", "der", "die", "das", "im", "Sommer",
           "Urlaub", "mein", "sehr", "Größe", "Straße", "belle", "jardin", "photo de", "très",
           "été", "avec", "les", "vacances", "château", "mon", "à côté", "près de", "hermoso",
           "jardín", "fotografía", "niño", "año", "con", "playa", "verano", "muy", "mi", "en el",
           "写真", "美しい", "風景", "壁纸", "图片", "高清", "可爱", "日本", "春", "фото", "красивый",
           "картинка", "природа", "лето", "обои", "скачать", "мой"]
EMOJI = ["😍", "🐶", "🌸", "❤️", "👍", "🔥", "✨", "😂", "🌞", "📷", "💕", "🙌", "🌈", "😊", "👌"]
SITES = ["en.wikipedia.org", "www.pinterest.com", "www.flickr.com", "commons.wikimedia.org",
         "www.ebay.com", "www.amazon.com", "www.etsy.com", "www.istockphoto.com",
         "www.shutterstock.com", "www.dreamstime.com", "www.alamy.com", "www.123rf.com",
         "fineartamerica.com", "www.dailymail.co.uk", "imgur.com", "www.tumblr.com",
         "www.deviantart.com", "www.ebay.de", "www.leboncoin.fr", "www.mercadolibre.com.mx",
         "vk.com", "www.baidu.com", "blog.naver.com", "www.wallpaperswide.com", "pixabay.com"]
USERS = ["john", "maria", "photogirl", "mike_s", "anna.k", "natureguy", "jenny", "webmaster",
         "info", "contact", "sales", "bob1972", "klaus", "sophie", "carlos", "yuki", "olga"]
GENERIC = ["untitled", "holiday", "family", "wedding", "birthday party", "my trip", "sunset",
           "weekend", "friends", "selfie", "vacation", "christmas", "new year", "graduation",
           "road trip", "concert", "summer camp", "day out", "random", "test"]
GENERIC_HYPER = ["photo", "memories", "life", "travel", "fun", "people", "day"]

TITLE_TEMPLATES = [
    "{name}", "{name}", "{Name}", "{Adj} {name}", "{name} {boiler}", "{Name} | {site}",
    "{Name} - Wikipedia, the free encyclopedia", "IMG_{n4}", "DSC{n5}", "{NAME}", "{name} {year}",
    "{hyper} in the {ctx}", "{Name} &amp; {ctx}", "{cfor} {foreign}", "{name} {emoji}",
    "{Name} | Flickr - Photo Sharing!", "{num}. {name}", "&lt;b&gt;{name}&lt;/b&gt; {boiler}",
    "{adj} {name} {hyper} {boiler} {boiler2}", "{Name} {hyper} {tag}", "P{n7}.JPG",
    "{name} - {boiler} - {year}", "{NAME}!!! {Adj} {hyper}", "&quot;{Name}&quot;",
    "{name}'s {ctx}", "{Name} ({cfor})", "{foreign} {name} {foreign2}", "{name}...",
]
DESCRIPTION_TEMPLATES = [
    "{Adj} {name} in the {ctx}.", "My {name} at the {ctx} {year}", "This {adj} {hyper} was "
    "spotted near the {ctx}.", "Look at this {name}!!!", "It&#39;s a {adj} {name}",
    "&quot;{Name}&quot; {boiler}", "{Name} &amp;amp; {ctx}", "<br/>",
    '<a href="{url}">{name}</a>', "See more at {url}", "Contact me: {email}",
    "{tag} {Tag} {htag}", "Taken with {camera} on {date}.", "© {year} {user}. All rights reserved.",
    "{foreign} {foreign2} {name}", "{emoji}{emoji2}", "{NAME}!!!", "??? {name} ...",
    "Free {name} {boiler} - download {boiler2} for your {ctx} {year}",
    "DSC{n5}", "IMG_{n4}.JPG", "{cfor} {foreign}", "&lt;b&gt;{Name}&lt;/b&gt; - {boiler}",
    "Some {hyper} pictures from our trip to the {ctx}. {url}",
    "Price: ${num}.99 - {Adj} {name} for sale, email {email}", "{name} {hyper} {ctx} {adj}",
    "Find the best {name} {boiler} on {site} :-)", "{ctx} / {hyper} / {name} / {year}",
    "I love my {name} {emoji} {tag}", "Nr. {num} - {Name}, {cfor}", "...", "{Adj} {hyper}!!",
    "Photo by {user} ({email}) -- {url}", '<p class="caption">{Name}</p>', "{num} x {num2} px",
    "Learn more about the {name} &gt;&gt; {url}", "{NAME} {NAME} {boiler}",
]
SEPARATORS = [" ", " ", " ", "\n", " <br/>", "<br />\n", "  ", " | ", "\r\n"]

# --------------------------------------------------------------------------------------------
# Classes from WordNet
# --------------------------------------------------------------------------------------------


@dataclass
class ExampleClass:
    index: int           # 0-based class id
    wnid: str            # "n02099601"
    lemmas: list[str]    # WordNet lemma names, with underscores
    root: int            # index into ROOTS
    hypernym: str        # the nearest hypernym's first lemma, spaces

    @property
    def words(self) -> list[str]:
        return [lemma.replace("_", " ") for lemma in self.lemmas]

    def synset_line(self) -> str:
        return f"{self.wnid} {', '.join(self.words)}"


def load_wn():
    from text_mining.wordnet import load_wordnet

    with warnings.catch_warnings():  # "multilingual functions are not available": not needed
        warnings.simplefilter("ignore", UserWarning)
        return load_wordnet()


@functools.lru_cache(maxsize=2)
def candidate_pool(wn) -> tuple[tuple[object, int], ...]:
    """(synset, root index) for every leaf under ROOTS, sorted by WordNet offset."""
    seen: dict[object, int] = {}
    for i, (name, *_rest) in enumerate(ROOTS):
        for syn in wn.synset(name).closure(lambda s: s.hyponyms()):
            if syn in seen or syn.hyponyms():
                continue
            names = syn.lemma_names()
            if not names or any("," in n or not n.isascii() or not n.isprintable() for n in names):
                continue
            seen[syn] = i
    return tuple(sorted(seen.items(), key=lambda kv: kv[0].offset()))


def choose_classes(wn, n: int, rng: random.Random) -> list[ExampleClass]:
    from text_mining.wordnet import wnid_of

    pool = candidate_pool(wn)
    if n > len(pool):
        raise ValueError(f"at most {len(pool)} classes can be drawn, not {n}")
    picked = sorted(rng.sample(range(len(pool)), n))
    classes = []
    for index, k in enumerate(picked):
        syn, root = pool[k]
        hypers = sorted(syn.hypernyms(), key=lambda h: h.offset())  # NLTK's order is a set's
        hyper = hypers[0].lemma_names()[0].replace("_", " ") if hypers else ROOTS[root][2][0]
        classes.append(ExampleClass(index, wnid_of(syn), list(syn.lemma_names()), root, hyper))
    return classes


def make_queries(classes: list[ExampleClass], rng: random.Random) -> list[tuple[int, int, str]]:
    """(1-based query id, class index, query with + between words): 1 or 2 per class."""
    queries: list[tuple[int, int, str]] = []
    for c in classes:
        texts = [c.lemmas[0]]
        if len(c.lemmas) > 1 and rng.random() < 0.7:
            texts.append(rng.choice(c.lemmas[1:]))
        elif rng.random() < 0.3:
            kind = ROOTS[c.root][2][0]
            if kind not in c.lemmas[0].lower().split("_"):
                texts.append(f"{c.lemmas[0]}_{kind}")
        for text in texts:
            queries.append((len(queries) + 1, c.index, "+".join(text.replace("_", " ").split())))
    return queries


# --------------------------------------------------------------------------------------------
# Text
# --------------------------------------------------------------------------------------------


@dataclass
class _Vocab:
    names: list[str]
    hypers: list[str]
    adjs: list[str]
    ctxs: list[str]
    cfor: list[str]


def _class_vocab(c: ExampleClass) -> _Vocab:
    _root, group, kind, foreign = ROOTS[c.root]
    words = c.words
    names = [words[0]] * 3 + words + [w.lower() for w in words]
    hypers = kind + [c.hypernym]
    adjs, ctxs = GROUPS[group]
    return _Vocab(names, hypers, adjs, ctxs, foreign)


GENERIC_VOCAB = _Vocab(GENERIC, GENERIC_HYPER, sorted({w for adjs, _ in GROUPS.values() for w in adjs}),
                       sorted({w for _, ctxs in GROUPS.values() for w in ctxs}),
                       ["Bild", "photo", "foto", "写真", "фото", "Urlaub", "vacances", "fiesta"])


def _camel(text: str) -> str:
    return "".join(w[:1].upper() + w[1:] for w in text.split())


class _Fields(dict):
    """Template fields, each drawn when a template first asks for it."""

    def __init__(self, maker: "_TextMaker", vocab: _Vocab):
        super().__init__()
        self.maker = maker
        self.vocab = vocab

    def __missing__(self, key: str) -> str:
        value = self.maker.field(key, self)
        self[key] = value
        return value


class _TextMaker:
    def __init__(self, rng: random.Random, classes: list[ExampleClass]):
        self.rng = rng
        self.vocabs = [_class_vocab(c) for c in classes]

    def subject(self, class_index: int) -> _Vocab:
        r = self.rng.random()
        if r < OWN_TEXT:
            return self.vocabs[class_index]
        if r < OWN_TEXT + OTHER_CLASS_TEXT:
            return self.rng.choice(self.vocabs)
        return GENERIC_VOCAB

    def field(self, key: str, f: _Fields) -> str:  # noqa: C901 - one branch per field
        r, v = self.rng, f.vocab
        if key == "name":
            return r.choice(v.names)
        if key == "Name":
            return f["name"].title()
        if key == "NAME":
            return f["name"].upper()
        if key == "hyper":
            return r.choice(v.hypers)
        if key in ("adj", "Adj"):
            adj = r.choice(v.adjs)
            return adj.capitalize() if key == "Adj" else adj
        if key == "ctx":
            return r.choice(v.ctxs)
        if key in ("boiler", "boiler2"):
            return r.choice(BOILERPLATE)
        if key in ("foreign", "foreign2"):
            return r.choice(FOREIGN)
        if key == "cfor":
            return r.choice(v.cfor)
        if key in ("emoji", "emoji2"):
            return r.choice(EMOJI)
        if key == "year":
            return str(r.randint(2004, 2016))
        if key in ("num", "num2"):
            return str(r.randint(1, 999))
        if key == "n4":
            return f"{r.randint(0, 9999):04d}"
        if key == "n5":
            return f"{r.randint(0, 99999):05d}"
        if key == "n7":
            return f"{r.randint(0, 9999999):07d}"
        if key == "date":
            return f"{r.randint(2004, 2016)}-{r.randint(1, 12):02d}-{r.randint(1, 28):02d}"
        if key == "camera":
            return r.choice(CAMERAS)
        if key == "user":
            return r.choice(USERS)
        if key == "email":
            domain = r.choice(["gmail.com", "yahoo.com", "hotmail.com", "web.de", "mail.ru",
                               "orange.fr", f"{self.slug(f['name'], '')}.com"])
            return f"{f['user']}{r.choice(['', '', str(r.randint(1, 99))])}@{domain}"
        if key == "site":
            if r.random() < 0.7:
                return r.choice(SITES)
            stem = self.slug(f["name"], r.choice(["", "-"]))
            suffix = r.choice(["world", "info", "pics", "blog", "-online", ""])
            return f"www.{stem}{suffix}{r.choice(['.com', '.net', '.org', '.de', '.fr', '.ru', '.co.uk'])}"
        if key == "url":
            slug = self.slug(f["name"], "-")
            form = r.randrange(4)
            if form == 0:
                return f"http://{f['site']}/{slug}.html"
            if form == 1:
                return f"https://{f['site']}/photos/{f['user']}/{r.randint(10**9, 10**11)}/"
            if form == 2:
                return f"www.{slug.replace('-', '')}.com"
            return f"http://{f['site']}/index.php?id={r.randint(1, 99999)}&amp;cat={slug}"
        if key in ("tag", "Tag", "htag"):
            text = f["hyper"] if key == "htag" else f["name"]
            return "#" + (_camel(text) if key == "Tag" else text.replace(" ", "").lower())
        raise KeyError(key)

    @staticmethod
    def slug(text: str, sep: str) -> str:
        return sep.join("".join(ch for ch in w.lower() if ch.isalnum()) for w in text.split()) or "img"

    def title(self, f: _Fields) -> str:
        text = self.rng.choice(TITLE_TEMPLATES).format_map(f)
        return text.upper() if self.rng.random() < 0.04 else text

    def description(self, f: _Fields) -> str:
        r = self.rng
        k = r.choice((0, 1, 1, 1, 2, 2, 3, 4))
        parts = [r.choice(DESCRIPTION_TEMPLATES).format_map(f) for _ in range(k)]
        out = ""
        for i, part in enumerate(parts):
            out += (r.choice(SEPARATORS) if i else "") + part
        return out

    def tags(self, f: _Fields) -> list[str]:
        r = self.rng
        n = r.choice((0, 1, 2, 3, 4, 5, 6, 8, 10, 14))
        tags: list[str] = []
        for _ in range(n):
            pick = r.randrange(8)
            if pick == 0:
                tag = f["name"]  # multi-word tag
            elif pick == 1:
                tag = f["name"].replace(" ", "")  # concatenated
            elif pick == 2:
                tag = r.choice(f["name"].split())
            elif pick == 3:
                tag = r.choice(f.vocab.hypers)
            elif pick == 4:
                tag = r.choice(f.vocab.ctxs + f.vocab.adjs)
            elif pick == 5:
                tag = r.choice(FLICKR_TAGS)
            elif pick == 6:
                tag = r.choice(f.vocab.cfor + FOREIGN)
            else:
                tag = r.choice([f["year"], f"{f['camera']}".replace(" ", ""), r.choice(BOILERPLATE)])
            tag = tag.lower()
            if tag not in tags:
                tags.append(tag)
        return tags

    def messy(self, record: dict) -> dict:
        """Drop keys, null them or empty them now and then; rarely empty all the text."""
        r = self.rng
        if r.random() < 0.02:
            for key in ("title", "description"):
                record[key] = ""
            if "tags" in record:
                record["tags"] = []
        for key in list(record):
            if key == "id":
                continue
            x = r.random()
            if x < 0.03:
                del record[key]
            elif x < 0.06:
                record[key] = None
            elif x < 0.08:
                record[key] = [] if key == "tags" else ""
        return record

    def google_record(self, class_index: int, row: int) -> dict:
        r = self.rng
        f = _Fields(self, self.subject(class_index))
        site = f["site"]
        slug = self.slug(f["name"], r.choice(["-", "_", ""]))
        ext = r.choice(["jpg", "jpg", "jpg", "JPG", "jpeg", "png"])
        folder = r.choice(["images", f"wp-content/uploads/{f['year']}", "img", "photos"])
        page = r.choice([".html", "/", f".php?p={r.randint(1, 9999)}"])
        record = {
            "id": f"{r.getrandbits(128):032x}",
            "title": self.title(f),
            "description": self.description(f),
            "url": f"http://{site}/{folder}/{slug}{r.choice(['', '_', '-'])}{r.randint(1, 999)}.{ext}",
            "page_url": f"http://{site}/{slug}{page}",
            "site": site,
            "rank": str(row),
        }
        return self.messy(record)

    def flickr_record(self, class_index: int, photo_id: int) -> dict:
        f = _Fields(self, self.subject(class_index))
        record = {
            "id": str(photo_id),
            "title": self.title(f),
            "description": self.description(f),
            "tags": self.tags(f),
        }
        return self.messy(record)


# --------------------------------------------------------------------------------------------
# Images
# --------------------------------------------------------------------------------------------

PATTERNS = ("stripes", "circles", "checker", "gradient", "waves", "dots", "blob", "grid")


@dataclass
class _Style:
    hue: float
    hue2: float
    sat: float
    val: float
    pattern: str
    freq: float
    angle: float


def class_style(seed: int, index: int) -> _Style:
    r = np.random.default_rng([seed, 101, index])
    hue = (index * 0.6180339887 + r.uniform(0.0, 0.08)) % 1.0
    return _Style(
        hue=hue,
        hue2=(hue + r.uniform(0.25, 0.75)) % 1.0,
        sat=float(r.uniform(0.55, 1.0)),
        val=float(r.uniform(0.55, 0.95)),
        pattern=PATTERNS[int(r.integers(0, len(PATTERNS)))],
        freq=float(r.uniform(2.0, 6.0)),
        angle=float(r.uniform(0.0, math.pi)),
    )


def _rgb(h: float, s: float, v: float) -> np.ndarray:
    return np.array(colorsys.hsv_to_rgb(h % 1.0, min(max(s, 0.0), 1.0), min(max(v, 0.0), 1.0)),
                    dtype=np.float32) * 255.0


def render_image(style: _Style, width: int, height: int, r: np.random.Generator, noise: float = 10.0):
    """An RGB PIL image: the class's two colours in its pattern, shifted and noisy."""
    from PIL import Image

    s = float(min(width, height))
    y = ((np.arange(height, dtype=np.float32) - height * r.uniform(0.3, 0.7)) / s)[:, None]
    x = ((np.arange(width, dtype=np.float32) - width * r.uniform(0.3, 0.7)) / s)[None, :]
    f = style.freq * r.uniform(0.85, 1.15)
    phase = r.uniform(0.0, 2 * math.pi)
    a = style.angle + r.normal(0.0, 0.12)
    two_pi = 2 * math.pi
    kind = style.pattern
    if kind == "stripes":
        p = 0.5 + 0.5 * np.sin(two_pi * f * (x * math.cos(a) + y * math.sin(a)) + phase)
    elif kind == "circles":
        p = 0.5 + 0.5 * np.sin(two_pi * f * np.sqrt(x * x + y * y) + phase)
    elif kind == "checker":
        p = (np.floor(f * (x * math.cos(a) - y * math.sin(a)) + phase)
             + np.floor(f * (x * math.sin(a) + y * math.cos(a)) + phase)) % 2
    elif kind == "gradient":
        p = np.clip(0.5 + 1.2 * (x * math.cos(a) + y * math.sin(a)), 0.0, 1.0)
    elif kind == "waves":
        p = 0.5 + 0.5 * np.sin(two_pi * f * y + 1.5 * np.sin(two_pi * f * 0.5 * x) + phase)
    elif kind == "dots":
        p = (np.sin(two_pi * f * x + phase) * np.sin(two_pi * f * y + phase) > 0.4).astype(np.float32)
    elif kind == "blob":
        p = np.exp(-(x * x + y * y) / (2 * (0.12 + 0.1 * r.random()) ** 2))
    else:  # grid
        p = ((np.abs(np.sin(math.pi * f * x + phase)) < 0.25)
             | (np.abs(np.sin(math.pi * f * y + phase)) < 0.25)).astype(np.float32)
    p = np.broadcast_to(p, (height, width)).astype(np.float32)
    c1 = _rgb(style.hue + r.normal(0, 0.02), style.sat + r.normal(0, 0.05), style.val + r.normal(0, 0.07))
    c2 = _rgb(style.hue2 + r.normal(0, 0.02), style.sat * 0.6, 1.0 - 0.6 * style.val + r.normal(0, 0.05))
    img = c1 + (c2 - c1) * p[:, :, None]
    if noise > 0:
        block = 8
        coarse = r.normal(0.0, noise, (height // block + 1, width // block + 1, 3)).astype(np.float32)
        img += np.repeat(np.repeat(coarse, block, axis=0), block, axis=1)[:height, :width]
        img += r.normal(0.0, noise * 0.25, (height, width, 1)).astype(np.float32)
    return Image.fromarray(np.clip(img, 0, 255).astype(np.uint8), "RGB")


def _train_image(seed: int, key: int, style: _Style):
    r = np.random.default_rng([seed, 1, key])
    side = int(r.integers(MIN_SIDE, MAX_SIDE + 1))
    aspect = math.exp(r.uniform(math.log(0.5), math.log(2.0)))
    w, h = side, int(min(max(round(side * aspect), MIN_SIDE), MAX_SIDE))
    img = render_image(style, w, h, r, noise=float(r.uniform(4.0, 16.0)))
    if r.random() < 0.07:
        img = img.convert("L")
    return img, int(r.integers(75, 96))


def _eval_image(seed: int, stream: int, key: int, style: _Style):
    r = np.random.default_rng([seed, stream, key])
    long_side = int(r.integers(VAL_SIDE, VAL_SIDE * 4 // 3 + 1))
    w, h = (long_side, VAL_SIDE) if r.random() < 0.6 else (VAL_SIDE, long_side)
    return render_image(style, w, h, r, noise=float(r.uniform(3.0, 8.0))), int(r.integers(75, 91))


# --------------------------------------------------------------------------------------------
# The release
# --------------------------------------------------------------------------------------------


def query_dir(query_id: int, version: str) -> str:
    return f"q{query_id:04d}" if version == "1.0" else f"q{query_id:05d}"


def json_location(source: str, query_id: int, version: str) -> tuple[str, str]:
    """(path written in the meta lists, path of the file under ROOT)."""
    listed = f"{source}/{query_dir(query_id, version)}.json"
    return listed, (listed if version == "1.0" else f"meta/{listed}")


def _normalize_version(version) -> str:
    text = str(version).strip()
    text = {"1": "1.0", "2": "2.0"}.get(text, text)
    if text not in VERSIONS:
        raise ValueError(f"version must be one of {', '.join(VERSIONS)}, not {version!r}")
    return text


def _check_int(name: str, value, low: int) -> int:
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value < low:
        raise ValueError(f"{name} must be an integer >= {low}, not {value!r}")
    return int(value)


def _check_out(out: Path) -> None:
    if out.is_dir():
        if any(out.iterdir()):
            raise ValueError(f"{out} is not empty; give a new or empty folder for the example")
    elif out.exists() or out.is_symlink():
        raise ValueError(f"{out} exists and is not a folder")


def _remove_stale_tmp(out: Path) -> None:
    """Remove hidden work folders of killed runs for this same output name."""
    prefix = f".{out.name}.tmp-"
    if not out.parent.is_dir():
        return
    for entry in sorted(out.parent.iterdir()):
        if not entry.name.startswith(prefix):
            continue
        pid = entry.name[len(prefix):].split("-", 1)[0]
        if pid.isdigit() and int(pid) != os.getpid():
            try:
                os.kill(int(pid), 0)
                continue  # its writer still runs
            except ProcessLookupError:
                pass
            except PermissionError:
                continue
        shutil.rmtree(entry, ignore_errors=True)


def _write_lines(path: Path, lines: list[str]) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "w", encoding="utf-8", newline="\n") as fh:
        fh.write("".join(line + "\n" for line in lines))


def _split(total: int, weights: list[float], rng: random.Random) -> list[int]:
    counts = [0] * len(weights)
    for _ in range(total):
        counts[rng.choices(range(len(weights)), weights)[0]] += 1
    return counts


def make_example(out, classes: int = 10, images_per_class: int = 24, seed: int = 0,
                 version: str = "1.0", val_per_class: int = 3, images: bool = True) -> dict:
    """Write a WebVision-format example release to the new or empty folder ``out``.

    Returns a summary: ``{"out", "version", "seed", "classes", "queries", "train": {"google",
    "flickr"}, "train_total", "val", "test", "json_files", "json_records", "images_written",
    "paths": {name: path}}``. Raises ValueError for a non-empty ``out`` or bad arguments."""
    version = _normalize_version(version)
    n_classes = _check_int("classes", classes, 1)
    per_class = _check_int("images_per_class", images_per_class, 1)
    seed = _check_int("seed", seed, 0)
    val_per_class = _check_int("val_per_class", val_per_class, 0)
    out = Path(out).expanduser().absolute()
    _check_out(out)

    rng = random.Random(seed)
    chosen = choose_classes(load_wn(), n_classes, rng)
    queries = make_queries(chosen, rng)
    by_class: dict[int, list[int]] = {}
    for qid, cid, _text in queries:
        by_class.setdefault(cid, []).append(qid)

    # How many images each (source, query) has.
    counts = {source: {} for source in SOURCES}
    for c in chosen:
        qids = by_class[c.index]
        n_google = min(per_class, max(0, round(per_class * rng.uniform(0.4, 0.6))))
        weights = [0.6, 0.4][: len(qids)]
        for source, n in (("google", n_google), ("flickr", per_class - n_google)):
            for qid, k in zip(qids, _split(n, weights, rng)):
                counts[source][qid] = k

    text = _TextMaker(rng, chosen)
    class_of_query = {qid: cid for qid, cid, _ in queries}
    filelists: dict[str, list[str]] = {s: [] for s in SOURCES}
    metalists: dict[str, list[str]] = {s: [] for s in SOURCES}
    metadata: list[tuple[str, list[dict]]] = []  # (file path under ROOT, records)
    used_photo_ids: set[int] = set()
    for source in SOURCES:
        for qid, cid, _q in queries:
            n = counts[source][qid]
            extra = sum(rng.random() < FAILED_ROWS for _ in range(n)) + (rng.random() < 0.5)
            total = n + extra
            failed = set(rng.sample(range(1, total + 1), extra))
            rows = [row for row in range(1, total + 1) if row not in failed]
            listed, written = json_location(source, qid, version)
            folder = f"{source}/{query_dir(qid, version)}"
            records: list[dict] = []
            entries: list[tuple[str, int]] = []  # (image path, row)
            for row in range(1, total + 1):
                has_image = row not in failed
                if source == "google":
                    records.append(text.google_record(cid, row))
                    if has_image:
                        entries.append((f"{folder}/{len(entries):06d}.jpg", row))
                else:
                    photo_id = rng.randint(10**9, 10**11 - 1)
                    while photo_id in used_photo_ids:
                        photo_id = rng.randint(10**9, 10**11 - 1)
                    used_photo_ids.add(photo_id)
                    records.append(text.flickr_record(cid, photo_id))
                    if has_image:
                        entries.append((f"{folder}/{photo_id}.jpg", row))
            assert len(entries) == len(rows)
            entries.sort()
            for path, row in entries:
                filelists[source].append(f"{path} {class_of_query[qid]}")
                metalists[source].append(f"{listed} {row}")
            metadata.append((written, records))

    val_labels = [c.index for c in chosen for _ in range(val_per_class)]
    rng.shuffle(val_labels)
    test_labels = [c.index for c in chosen for _ in range(TEST_PER_CLASS)]
    rng.shuffle(test_labels)
    json_styles = [rng.random() for _ in metadata]

    info: dict[str, list[str]] = {"synsets.txt": [c.synset_line() for c in chosen]}
    query_lines = [f"{qid} {q}" for qid, _cid, q in queries]
    if version == "1.0":
        info["queries_google.txt"] = query_lines
        info["queries_flickr.txt"] = query_lines
        info["queries_synsets_map.txt"] = [f"{qid} {cid + 1}" for qid, cid, _ in queries]
    else:
        info["queries.txt"] = query_lines
        info["queries_synsets_map.txt"] = [f"{qid} {cid}" for qid, cid, _ in queries]
    for source in SOURCES:
        info[f"train_filelist_{source}.txt"] = filelists[source]
        info[f"train_meta_list_{source}.txt"] = metalists[source]
    info["train_filelist_all.txt"] = filelists["google"] + filelists["flickr"]
    info["train_meta_list_all.txt"] = metalists["google"] + metalists["flickr"]
    info["val_filelist.txt"] = [f"val{i + 1:06d}.jpg {cid}" for i, cid in enumerate(val_labels)]
    info["test_filelist.txt"] = [f"test{i + 1:06d}.jpg" for i in range(len(test_labels))]

    summary = {
        "out": str(out),
        "version": version,
        "seed": seed,
        "classes": n_classes,
        "queries": len(queries),
        "train": {s: len(filelists[s]) for s in SOURCES},
        "train_total": sum(len(filelists[s]) for s in SOURCES),
        "val": len(val_labels),
        "test": len(test_labels),
        "json_files": len(metadata),
        "json_records": sum(len(recs) for _, recs in metadata),
        "images_written": 0,
        "paths": {},
    }
    readme = [
        "Generated WebVision-format example (webtag: python -m pipeline example).",
        "Not real data: classes are real WordNet 3.0 synsets, texts and images are synthetic.",
        f"version: {version}",
        f"seed: {seed}",
        f"classes: {n_classes}",
        f"queries: {len(queries)}",
        f"train images: {summary['train_total']} (google {summary['train']['google']}, "
        f"flickr {summary['train']['flickr']})",
        f"val images: {len(val_labels)}",
        f"test images: {len(test_labels)}",
        f"metadata files: {len(metadata)} ({summary['json_records']} records)",
        f"image files: {'yes' if images else 'no (lists only)'}",
    ]

    _remove_stale_tmp(out)
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = out.with_name(f".{out.name}.tmp-{os.getpid()}-{uuid.uuid4().hex[:8]}")
    tmp.mkdir()
    try:
        for name, lines in info.items():
            _write_lines(tmp / "info" / name, lines)
        _write_lines(tmp / "README.txt", readme)
        for (written, records), style in zip(metadata, json_styles):
            path = tmp / written
            path.parent.mkdir(parents=True, exist_ok=True)
            if style < 0.4:
                dumped = json.dumps(records, ensure_ascii=False, indent=2)
            elif style < 0.8:
                dumped = json.dumps(records, ensure_ascii=False, separators=(",", ":"))
            else:
                dumped = json.dumps(records, ensure_ascii=False)
            path.write_text(dumped + "\n", encoding="utf-8")
        if images:
            summary["images_written"] = _write_images(tmp, seed, chosen, info, val_labels, test_labels)
        _check_out(out)
        if out.is_dir():
            out.rmdir()  # empty (checked): the finished release takes its place
        os.rename(tmp, out)
    finally:
        if tmp.exists():
            shutil.rmtree(tmp, ignore_errors=True)

    summary["paths"] = {"root": str(out), "readme": str(out / "README.txt")}
    summary["paths"].update({name[:-4]: str(out / "info" / name) for name in info})
    summary["paths"]["metadata_root"] = str(out / "meta" if version == "2.0" else out)
    log.info("example release in %s: %d classes, %d train images, %d json files",
             out, n_classes, summary["train_total"], len(metadata))
    return summary


def _write_images(root: Path, seed: int, chosen: list[ExampleClass], info: dict[str, list[str]],
                  val_labels: list[int], test_labels: list[int]) -> int:
    from tqdm import tqdm

    styles = [class_style(seed, c.index) for c in chosen]
    train = info["train_filelist_all.txt"]
    total = len(train) + len(val_labels) + len(test_labels)
    made_dirs: set[str] = set()
    with tqdm(total=total, desc="example images", unit="img") as bar:
        for key, line in enumerate(train):
            rel, cid = line.rsplit(" ", 1)
            folder = rel.rsplit("/", 1)[0]
            if folder not in made_dirs:
                (root / folder).mkdir(parents=True, exist_ok=True)
                made_dirs.add(folder)
            img, quality = _train_image(seed, key, styles[int(cid)])
            img.save(root / rel, "JPEG", quality=quality)
            bar.update()
        for stream, folder, stem, labels in ((2, "val_images_256", "val", val_labels),
                                             (3, "test_images_256", "test", test_labels)):
            (root / folder).mkdir(parents=True, exist_ok=True)
            for i, cid in enumerate(labels):
                img, quality = _eval_image(seed, stream, i, styles[cid])
                img.save(root / folder / f"{stem}{i + 1:06d}.jpg", "JPEG", quality=quality)
                bar.update()
    return total
