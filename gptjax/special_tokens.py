"""The special token ids of the multimodal vocabulary: the data writes them, the model splices on them.

  0 <pad>   1 <bos>   2 <eos>   3 <image>   4 <audio>

Fixed, so that any multimodal checkpoint reads any multimodal dataset.
"""
PAD_ID, BOS_ID, EOS_ID, IMAGE_ID, AUDIO_ID = range(5)
SPECIALS = ("<pad>", "<bos>", "<eos>", "<image>", "<audio>")
