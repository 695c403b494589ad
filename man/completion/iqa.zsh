#compdef iqa

_iqa_completion() {
  eval $(env _TYPER_COMPLETE_ARGS="${words[1,$CURRENT]}" _IQA_COMPLETE=complete_zsh iqa)
}

compdef _iqa_completion iqa
