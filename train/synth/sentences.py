"""Sentence bank: emotional and neutral wordings built from templates and word lists.

Sentences are composed from templates so there are hundreds of distinct ones per wording, each with a
sentence_id that is a hash of its text (stable across seeds, sizes and runs). The bank is drawn with a fixed
internal seed and in a fixed order, so a smaller bank is a prefix of a larger one. Punctuation is kept to
commas and full stops: an exclamation mark would change the synthesizer's intonation and leak the
wording's emotion into the voice of a "text"-carrier utterance.
"""

from __future__ import annotations

import hashlib
import re
from dataclasses import dataclass

import numpy as np

WORDINGS = ("neutral", "happy", "angry", "sad")
_BANK_SEED = 20240611

TEMPLATES: dict[str, tuple[str, ...]] = {
    "happy": (
        "I am so {happy_adj} that {good_event}.",
        "{happy_open}, {good_event}.",
        "This is the best {treat} I have had {timeframe}.",
        "I love {loved_thing}, it makes me so {happy_adj}.",
        "We are celebrating tonight because {good_event}.",
        "What a {lovely_adj} {day_part}, I feel {happy_adj}.",
        "{person} told me that {good_event}, and I am {happy_adj}.",
        "I could dance all {day_part} because {good_event}.",
    ),
    "angry": (
        "I am {angry_adj} that {bad_act}.",
        "How dare you {dare_act}.",
        "Stop {stop_act} right now, I have had enough.",
        "This is {outrage_adj}, {bad_act}.",
        "I told you {n_times} not to {dare_act}.",
        "Get out of my {place}, I am sick of {stop_act}.",
        "{person} says that {bad_act}, and I am {angry_adj}.",
        "Do not ever {dare_act} again, it is {outrage_adj}.",
    ),
    "sad": (
        "I miss {lost_one} so much {sad_time}.",
        "I feel so {sad_adj} since {sad_event}.",
        "Nobody {nobody_act}, and I feel {sad_adj}.",
        "It still hurts that {sad_event}.",
        "{sad_open}, {sad_event}.",
        "I cried all {day_part} because {sad_event}.",
        "Everything feels {empty_adj} now that {sad_event}.",
        "{person} told me that {sad_event}, and I feel {sad_adj}.",
    ),
    "neutral": (
        "The {object} is on the {furniture} in the {room}, next to the {object2}.",
        "The {meeting} starts at {hour} on {weekday} in the {venue}.",
        "Please put the {object} {location} before you leave the {room}.",
        "The {vehicle} leaves from {stop_place} at {hour} on {weekday}.",
        "I usually {routine} on {weekday} {time_of_day}, and then I {routine2}.",
        "The {shop} on {street} closes at {hour} on {weekday}.",
        "{person} will send the {document} {deadline}, after checking the numbers.",
        "The {document} has {number} pages and {number2} tables in the appendix.",
        "We need {number} more {supply} for the {room} by {weekday}.",
        "The {object} in the {room} is {colour}, and the {object2} is {colour2}.",
    ),
}

WORDS: dict[str, tuple[str, ...]] = {
    # happy
    "happy_adj": ("happy", "glad", "thrilled", "delighted", "overjoyed", "excited", "cheerful", "grateful"),
    "good_event": ("we won the championship", "you got the job", "my sister is getting married",
                   "the trip is finally booked", "everyone came to my party", "the baby arrived safely",
                   "our team passed the final exam", "the garden is in full bloom",
                   "grandma is coming to visit", "we found the perfect house", "my paintings sold out",
                   "the doctor says I am completely healthy", "our band got a record deal",
                   "my best friend is moving back home"),
    "happy_open": ("Wonderful news", "Oh how lovely", "Yes, finally", "Hooray", "This is fantastic",
                   "How amazing", "Guess what", "Best day ever"),
    "treat": ("meal", "birthday", "holiday", "present", "concert", "weekend", "surprise", "party"),
    "timeframe": ("in years", "in my whole life", "this year", "in a long time", "ever", "since childhood"),
    "loved_thing": ("this sunny weather", "spending time with you", "our new puppy", "dancing in the kitchen",
                    "this beautiful song", "the smell of fresh bread", "laughing with my friends",
                    "our little garden"),
    "lovely_adj": ("wonderful", "lovely", "beautiful", "brilliant", "glorious", "perfect", "fantastic"),
    # angry
    "angry_adj": ("furious", "livid", "fed up", "outraged", "really angry", "so mad", "disgusted"),
    "bad_act": ("you broke my phone again", "nobody listened to a word I said",
                "they cancelled my order without asking", "you lied to me", "he took the credit for my work",
                "you left the door wide open", "the landlord ignored us for weeks",
                "you scratched my car and drove off", "they charged me twice", "you read my diary",
                "the neighbours woke us up at three again", "you wasted all our savings"),
    "dare_act": ("read my private messages", "touch my things", "interrupt me like that",
                 "talk to me that way", "lie to my face", "waste my time", "slam that door",
                 "blame me for your mistakes"),
    "stop_act": ("yelling at me", "blaming everyone else", "making excuses", "wasting my time",
                 "ignoring my calls", "messing with my stuff", "lying to everyone", "kicking my chair"),
    "outrage_adj": ("outrageous", "unacceptable", "ridiculous", "disgraceful", "absurd", "insulting",
                    "infuriating"),
    "n_times": ("a hundred times", "over and over", "twice already", "again and again", "a thousand times"),
    "place": ("house", "office", "kitchen", "room", "car", "garden", "shop"),
    # sad
    "sad_adj": ("lonely", "hopeless", "miserable", "heartbroken", "empty", "sad", "gloomy", "lost"),
    "lost_one": ("my grandfather", "my old friends", "our dog", "my mother", "the way things were", "home",
                 "my brother", "our old house"),
    "sad_event": ("my dog passed away", "she moved far away", "we lost the house",
                  "the hospital called with bad news", "my best friend stopped calling",
                  "I failed the exam again", "our family fell apart", "grandpa is not getting better",
                  "they closed the school where I worked", "my father forgot my name",
                  "nobody came to the funeral", "the letters stopped coming"),
    "nobody_act": ("came to my birthday", "called me this week", "remembered my name", "answered my letters",
                   "wanted to sit with me", "asked how I was", "visited me in hospital"),
    "sad_time": ("tonight", "every day", "these days", "this winter", "when it rains", "at night"),
    "sad_open": ("I am sorry to tell you", "It is so painful", "I can hardly say it", "Sadly",
                 "I wish it were not true", "I do not know how to say this"),
    "empty_adj": ("empty", "grey", "pointless", "cold", "quiet", "meaningless", "heavy"),
    # shared
    "day_part": ("morning", "afternoon", "evening", "day", "weekend", "night"),
    "person": ("My brother", "Our neighbour", "The coach", "My best friend", "Your mother", "The teacher",
               "My cousin", "The manager"),
    # neutral
    "object": ("lamp", "key", "folder", "cup", "notebook", "charger", "umbrella", "stapler", "remote",
               "kettle", "calendar", "printer"),
    "venue": ("main hall", "meeting room", "library", "room twelve", "community centre", "east wing"),
    "object2": ("window", "radiator", "bookcase", "plant", "clock", "sofa"),
    "routine2": ("make some tea", "check my email", "read for a while", "cook dinner", "take the bus home"),
    "colour2": ("blue", "yellow", "dark red", "light grey", "orange"),
    "furniture": ("table", "shelf", "desk", "chair", "counter", "cabinet", "windowsill"),
    "room": ("kitchen", "hallway", "office", "living room", "basement", "meeting room", "garage"),
    "meeting": ("meeting", "class", "training", "lecture", "appointment", "review", "workshop"),
    "hour": ("nine", "ten thirty", "noon", "two fifteen", "four", "half past six", "eight"),
    "weekday": ("Monday", "Tuesday", "Wednesday", "Thursday", "Friday", "Saturday"),
    "location": ("in the second drawer", "next to the door", "on the top shelf", "under the desk",
                 "in the blue box", "behind the printer"),
    "vehicle": ("train", "bus", "ferry", "shuttle", "tram", "coach"),
    "stop_place": ("platform four", "gate twelve", "the north entrance", "stop number nine",
                   "the main square", "the second pier"),
    "routine": ("go shopping", "water the plants", "do the laundry", "call my aunt", "walk to work",
                "clean the windows", "read the newspaper"),
    "time_of_day": ("morning", "afternoon", "evening", "after lunch", "before dinner"),
    "shop": ("bakery", "pharmacy", "library", "post office", "hardware store", "bank"),
    "street": ("Main Street", "Elm Road", "the high street", "Park Avenue", "Station Road", "Mill Lane"),
    "document": ("report", "invoice", "schedule", "form", "manual", "agenda", "summary"),
    "deadline": ("on Friday", "by the end of the week", "tomorrow morning", "next Tuesday",
                 "after the meeting", "before noon"),
    "number": ("three", "four", "five", "six", "seven", "eight", "twelve"),
    "number2": ("two", "three", "four", "five", "six"),
    "supply": ("chairs", "pens", "boxes", "folders", "cables", "lamps"),
    "colour": ("grey", "white", "brown", "beige", "black", "green"),
}

_SLOT = re.compile(r"\{(\w+)\}")


@dataclass(frozen=True)
class Sentence:
    sentence_id: str   # "<wording>-<8 hex of sha1(text)>"
    text: str
    wording: str       # the emotion the words carry (neutral for the neutral pool)


def sentence_id(text: str, wording: str) -> str:
    return f"{wording}-{hashlib.sha1(text.encode('utf-8')).hexdigest()[:8]}"


def _fill(template: str, rng: np.random.Generator) -> str:
    text = _SLOT.sub(lambda m: WORDS[m.group(1)][int(rng.integers(len(WORDS[m.group(1)])))], template)
    return text[0].upper() + text[1:]


def sentence_bank(n_per_wording: int) -> dict[str, list[Sentence]]:
    """{wording: n distinct sentences}, templates taken in turn so each wording mixes all its templates."""
    bank: dict[str, list[Sentence]] = {}
    for w_index, wording in enumerate(WORDINGS):
        rng = np.random.default_rng([_BANK_SEED, w_index])
        templates = TEMPLATES[wording]
        seen: set[str] = set()
        out: list[Sentence] = []
        tries = 0
        while len(out) < n_per_wording:
            tries += 1
            if tries > 50 * n_per_wording + 1000:
                raise ValueError(f"cannot make {n_per_wording} distinct {wording} sentences "
                                 f"(got {len(out)}); lower --n-sentences")
            text = _fill(templates[tries % len(templates)], rng)
            if text not in seen:
                seen.add(text)
                out.append(Sentence(sentence_id(text, wording), text, wording))
        bank[wording] = out
    return bank
