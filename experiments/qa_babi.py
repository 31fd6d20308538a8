"""bAbI question answering (the 20 tasks, 1k training questions each), one model trained on all 20.

Each question is its story so far (the last 50 lines, as End-To-End Memory Networks keep) and the
question, then the answer + <eos>; the loss is on the answer only. A SentencePiece model of 600
pieces is trained on the training questions (it splits some words, " above" -> " a b o ve";
`--set data.sp_vocab_size=1000` keeps all whole and scored the same, 0.456). 10% of each task's stories
are held out for choosing settings; scripts/evaluate.py scores any bAbI file or folder.

  python scripts/train.py experiments/qa_babi.py --workdir runs/qa_babi
  python scripts/evaluate.py --workdir runs/qa_babi --task qa --held_out   # choose settings here
  python scripts/evaluate.py --workdir runs/qa_babi --task qa --data path/to/babi/en-test-folder
The first two layers read each story line on its own (model.line_local_layers=2: they attend within
their line only, so a place is tied to the name on its line before lines are compared, as memory
networks read sentences); the two after see the whole story. A curriculum: three stages of 400 steps
(data.first_groups / data.first_steps): task 1 alone, where the model learns to look up the line that
answers; then tasks 1, 6, 9, 10, the same lookup answered yes, no or maybe; then those with
coreference (11-13). The 3300 steps after read all 20 tasks, and what was learned carries over (1, 6,
9, 10, 12: 0.00, 0.00, 0.03, 0.06, 0.03; with task 1 alone first, 6 and 10 stayed at 0.54 and 0.57).
Answers are bare after the prompt's newline (data.answer_space=false; gptjax/data/task_formats.py).
Expect (2-core CPU, 4500 steps: 92 min on a slow AMD VM): held-out mean error 0.258, 15 tasks failed
(docs/tasks.md); the goal of <= 0.10 needs more than this decoder. Every setting was chosen on the
held-out questions: 2500 steps scored 0.310 (14 failed, 55 min), 4000 of the 4500 0.257; a fourth
stage adding the chain tasks 2, 3 did not teach them (0.76, 0.69 at step 2000, stopped), nor did 6
layers at 2500 steps (0.308, 15 failed, 82 min); task 1 alone first, then all 20, scored
0.336 (18 failed); a second stage of tasks 1, 6, 9, 10 (500 steps each), 0.320 (16 failed); without
the curriculum, 3000 steps with answers " bedroom" scored 0.395 (19 failed, 72 min); tasks 1-3 first
for 1000 steps, 0.407; 1000 steps with one line-local layer, 0.424; the GPT-2 flavour, 0.492.
"""
from gptjax.config import Experiment, Mesh, ModelSpec, Optimizer, Schedule, TaskData, Train

# Words that play the same part in every story they appear in. `--set data.augment_copies=8` adds 8
# copies of each training question with every class permuted at random (gptjax/data/augment.py); tasks
# 15, 18 and 20 are not copied: their answers hang on what the words mean (mouse/mice, hungry -> kitchen).
# Off as shipped: 4000 steps with it scored 0.474 on the held-out questions, against 0.444 without.
RENAMED = (
    "Daniel John Mary Sandra Bill Fred Jeff Julie Bernhard Brian Greg Julius Lily",
    "bathroom bedroom garden hallway kitchen office cinema park school",
    "apple football milk",
    "gray green white yellow blue pink red",
    "frog lion rhino swan",
    "rectangle sphere square triangle",
)

EXPERIMENT = Experiment(
    model=ModelSpec(flavour="llama", n_layer=4, n_head=4, d_model=192, max_seq_len=384, dropout=0.1,
                    line_local_layers=2),
    schedule=Schedule("warmup_cosine", peak_lr=1e-3, warmup_steps=200, end_lr=5e-5),
    optimizer=Optimizer(b1=0.9, b2=0.98, weight_decay=0.1, clip_norm=1.0),
    data=TaskData(task="qa", sp_vocab_size=600, val_fraction=0.1, context_lines=50,
                  augment_copies=0, permute=" ; ".join(RENAMED), augment_groups="1-14,16,17,19",
                  answer_space=False, first_groups="1; 1,6,9,10; 1,6,9,10,11,12,13",
                  first_steps=400),
    train=Train(steps=4500, batch_size=16, eval_every=500, eval_batches=30, checkpoint_every=500,
                log_every=50, sample_tokens=0),
    mesh=Mesh(cpu_devices=2),
)
