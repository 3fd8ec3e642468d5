"""Sentence bank: emotional and neutral wordings built from templates and word lists.

Sentences are composed from templates so there are hundreds of distinct ones per wording, each with a
sentence_id that is a hash of its text (stable across seeds, sizes and runs). The bank is drawn with a fixed
internal seed and in a fixed order, so a smaller bank is a prefix of a larger one. Exclamation marks are
never used: they would change the synthesizer's intonation and leak the wording's emotion into the voice of
a "text"-carrier utterance. Questions occur in every wording, so a question mark says nothing about the label.

Variety is the point (a model must not learn "neutral = no emotion words"): every wording mixes lengths
(two words to two clauses), statements, questions and requests, and many domains (work, travel, health,
family, weather, school, shopping, sport, technology). Neutral sentences often mention emotionally loaded
topics in a matter-of-fact way (a funeral time, a hospital address, exam results, a party's date), and many
emotional sentences carry their emotion without any emotion adjective ("You did it again.", "Why would you
do that to me?").
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
        "{happy_short}.",
        "Can you believe {good_event}?",
        "Did you hear that {good_event}?",
        "{good_event_cap}, finally.",
        "Thank you so much, this {gift} is {lovely_adj}.",
        "We did it, {good_event}.",
        "I cannot stop smiling since {good_event}.",
        "Oh, {lovely_adj}, you remembered my {treat}.",
        "Isn't it {lovely_adj} that {good_event}?",
        "Best news {timeframe}, {good_event}.",
        "Come here, I have to hug you, {good_event}.",
        "Everything worked out, {good_event}.",
        "You made my {day_part}, thank you.",
        "I passed, I actually passed the {exam}.",
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
        "{angry_short}.",
        "Why would you {dare_act}?",
        "Who said you could {dare_act}?",
        "You did it again, {bad_act}.",
        "What is wrong with you, {bad_act}.",
        "Are you kidding me, {bad_act}?",
        "I want my money back, {bad_act}.",
        "Enough, I am done {stop_act_ing}.",
        "Do you think I am stupid?",
        "Look at this mess, {bad_act}.",
        "Answer me, why did you {dare_act}?",
        "That is the last time you {dare_act_past}.",
        "I have waited {wait_time} and {bad_act}.",
        "Shut up and listen to me for once.",
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
        "{sad_short}.",
        "Why did {sad_event_q}?",
        "How am I supposed to go on now that {sad_event}?",
        "I keep looking at old photos of {lost_one}.",
        "I wish {lost_one} were still here.",
        "There is nothing left for me {sad_place}.",
        "I tried so hard, and {sad_event}.",
        "Do you ever think about {lost_one}?",
        "It is {sad_time_cap} again and I am alone.",
        "I do not want to talk about it, {sad_event}.",
        "We used to {shared_memory} together, before {sad_event}.",
        "I guess it does not matter anymore.",
        "I failed the {exam}, again.",
        "I sat by the phone all {day_part}, and nobody called.",
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
        "{neutral_short}.",
        "Where is the {object}?",
        "What time does the {meeting} start on {weekday}?",
        "Could you send me the {document} {deadline}?",
        "Is the {shop} on {street} open on {weekday}?",
        "Which {vehicle} goes to {stop_place}?",
        "The {loaded_event} is at {hour} on {weekday}, in the {venue}.",
        "The {clinic} is on {street}, the entrance is at the back.",
        "{exam_cap} results will be posted on {weekday} {time_of_day}.",
        "Did you turn off the {appliance} in the {room}?",
        "The forecast says {weather} on {weekday}.",
        "Add {food} and {food2} to the shopping list.",
        "The password has to be at least {number} characters long.",
        "Turn left at the {landmark}, then go straight for {number} minutes.",
        "The {loaded_event} was moved to the {venue}.",
        "My {relative} works at the {workplace} on {street}.",
        "The {game} ended {number} to {number2} on {weekday}.",
        "Please restart the {device} and try the update again.",
        "The {document} about the {loaded_event} is in the {room}.",
        "Do we have enough {supply} for {weekday}?",
        "The {vehicle} was {number} minutes late this {time_of_day}.",
        "I think the {object} needs new batteries.",
        "Your appointment at the {clinic} is on {weekday} at {hour}.",
        "The {room} will be painted {colour} next month.",
        "Water boils at one hundred degrees at sea level.",
        "The {loaded_event} lasted about {number} hours.",
        "Can you check whether the {device} is connected?",
        "The {game} starts at {hour}, the tickets are at the {landmark}.",
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
                   "my best friend is moving back home", "we got the tickets", "the scholarship came through",
                   "my novel is going to be published", "the puppy learned to sit", "we are going to Italy",
                   "the surgery went perfectly", "I got promoted", "they said yes"),
    "good_event_cap": ("We won", "You got the job", "The trip is booked", "We got the house", "She said yes",
                       "The results are in and we passed", "Our offer was accepted", "I got promoted"),
    "happy_open": ("Wonderful news", "Oh how lovely", "Yes, finally", "Hooray", "This is fantastic",
                   "How amazing", "Guess what", "Best day ever", "Oh wow", "I am over the moon"),
    "happy_short": ("This is wonderful", "I love it", "We won", "Yes, we did it", "What a great surprise",
                    "How lovely", "That is brilliant", "I am so proud of you", "Best news ever",
                    "Oh, thank you", "This is perfect", "What a lovely idea", "Congratulations",
                    "I knew you could do it"),
    "gift": ("present", "cake", "card", "scarf", "book", "necklace", "surprise", "painting"),
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
                "the neighbours woke us up at three again", "you wasted all our savings",
                "the delivery is late for the fifth time", "you ate my lunch again",
                "they gave my seat to someone else", "you forgot to pick me up", "he cheated in the game",
                "the plumber never showed up"),
    "dare_act": ("read my private messages", "touch my things", "interrupt me like that",
                 "talk to me that way", "lie to my face", "waste my time", "slam that door",
                 "blame me for your mistakes", "take my car without asking", "go through my bag"),
    "dare_act_past": ("read my messages", "touched my things", "interrupted me", "lied to my face",
                      "wasted my time", "took my car", "went through my bag"),
    "stop_act": ("yelling at me", "blaming everyone else", "making excuses", "wasting my time",
                 "ignoring my calls", "messing with my stuff", "lying to everyone", "kicking my chair"),
    "stop_act_ing": ("cleaning up after you", "waiting for you", "listening to your excuses",
                     "paying for everything", "covering for you", "being ignored"),
    "angry_short": ("Get out", "Leave me alone", "Stop it right now", "Unbelievable", "Not again",
                    "You liar", "Give it back", "That is enough", "How dare you", "Do not touch that",
                    "I said no", "This is a joke", "Move your car", "Never again"),
    "wait_time": ("two hours", "all morning", "three weeks", "since noon", "for a month"),
    "outrage_adj": ("outrageous", "unacceptable", "ridiculous", "disgraceful", "absurd", "insulting",
                    "infuriating"),
    "n_times": ("a hundred times", "over and over", "twice already", "again and again", "a thousand times"),
    "place": ("house", "office", "kitchen", "room", "car", "garden", "shop"),
    # sad
    "sad_adj": ("lonely", "hopeless", "miserable", "heartbroken", "empty", "sad", "gloomy", "lost"),
    "lost_one": ("my grandfather", "my old friends", "our dog", "my mother", "the way things were", "home",
                 "my brother", "our old house", "my father", "her voice", "our summers by the lake"),
    "sad_event": ("my dog passed away", "she moved far away", "we lost the house",
                  "the hospital called with bad news", "my best friend stopped calling",
                  "I failed the exam again", "our family fell apart", "grandpa is not getting better",
                  "they closed the school where I worked", "my father forgot my name",
                  "nobody came to the funeral", "the letters stopped coming", "he left without a word",
                  "the test results came back positive", "I lost my job", "we had to sell the farm"),
    "sad_event_q": ("she have to leave", "he stop calling", "it have to end like this", "nobody come",
                    "they give up on me", "everything go wrong"),
    "sad_open": ("I am sorry to tell you", "It is so painful", "I can hardly say it", "Sadly",
                 "I wish it were not true", "I do not know how to say this", "I am afraid"),
    "sad_short": ("I miss her", "It is over", "Nobody came", "I am so tired of this", "He is gone",
                  "I wish you were here", "It is all my fault", "I have no one", "I lost everything",
                  "It will never be the same", "Please do not go", "I cannot do this anymore"),
    "sad_place": ("in this town", "here anymore", "in this house", "at work", "in this city"),
    "sad_time_cap": ("Christmas", "his birthday", "Sunday", "another winter", "our anniversary"),
    "shared_memory": ("walk by the river", "cook on Sundays", "sing in the car", "plan our trips",
                      "play cards every night"),
    "nobody_act": ("came to my birthday", "called me this week", "remembered my name", "answered my letters",
                   "wanted to sit with me", "asked how I was", "visited me in hospital"),
    "sad_time": ("tonight", "every day", "these days", "this winter", "when it rains", "at night"),
    "empty_adj": ("empty", "grey", "pointless", "cold", "quiet", "meaningless", "heavy"),
    # shared
    "day_part": ("morning", "afternoon", "evening", "day", "weekend", "night"),
    "person": ("My brother", "Our neighbour", "The coach", "My best friend", "Your mother", "The teacher",
               "My cousin", "The manager"),
    "exam": ("driving test", "final exam", "interview", "audition", "math test", "entrance exam"),
    # neutral
    "neutral_short": ("Okay", "See you at five", "The bus is here", "It is on the table", "Turn left here",
                      "Two coffees, please", "The door is open", "Page twelve", "It is Tuesday",
                      "I will check", "Next question", "Sure, one moment", "The file is ready",
                      "Room four", "Noted", "That is the blue one"),
    "loaded_event": ("funeral", "wedding", "party", "award ceremony", "hearing", "memorial service",
                     "farewell lunch", "birthday dinner", "court date", "graduation"),
    "clinic": ("hospital", "dentist", "clinic", "pharmacy", "vet", "eye doctor"),
    "exam_cap": ("The exam", "The test", "The election", "The competition", "The audition"),
    "appliance": ("oven", "heater", "lights", "tap", "computer", "iron"),
    "weather": ("light rain in the morning", "clouds and a light wind", "sunshine in the afternoon",
                "snow above five hundred metres", "a high of fourteen degrees", "fog near the coast"),
    "food": ("milk", "rice", "apples", "bread", "onions", "coffee", "eggs", "pasta"),
    "food2": ("butter", "tomatoes", "tea", "cheese", "carrots", "flour"),
    "landmark": ("traffic lights", "church", "petrol station", "roundabout", "bridge", "post office"),
    "relative": ("aunt", "uncle", "sister", "brother", "cousin", "father", "mother"),
    "workplace": ("hospital", "bank", "warehouse", "town hall", "school", "museum"),
    "game": ("match", "game", "final", "race", "tournament"),
    "device": ("router", "laptop", "printer", "phone", "tablet", "server"),
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
    """{wording: n distinct sentences}, templates taken in turn so each wording mixes all its templates
    (a template with few fillings, such as a short fixed phrase, stops contributing once exhausted)."""
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
