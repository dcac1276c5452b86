"""The pipeline's stages, one module each, in the order they run:
data -> sft -> classifier -> sample -> score -> pairs -> reference -> train -> evaluate -> plot."""
