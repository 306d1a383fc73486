package main

import (
	"errors"
	"flag"
	"fmt"
	"os"
	"strconv"
	"strings"

	"gopkg.in/yaml.v3"
)

// repeatable marks a flag type that may be given several times, and so may
// take a list in a --config file.
type repeatable interface {
	repeatable()
}

func (*stringList) repeatable() {}
func (authFlag) repeatable()    {}

// configLines records the lines of a --config file that set flags, so
// that a mistake found after the file is applied names its line. A nil
// *configLines means that there is no --config file.
type configLines struct {
	path  string
	lines map[string][]int // by flag name, the line of each value, in order
}

// locate returns err prefixed with the file and line that set value i of
// flag, a name with or without its dashes. It returns err unchanged when
// no file set that value, as when the command line set the flag.
func (c *configLines) locate(flag string, i int, err error) error {
	if c == nil || err == nil {
		return err
	}
	lines := c.lines[strings.TrimPrefix(flag, "--")]
	if i >= len(lines) {
		return err
	}
	return fmt.Errorf("%s:%d: %w", c.path, lines[i], err)
}

// setBy reports whether the file set flag.
func (c *configLines) setBy(flag string) bool {
	return c != nil && len(c.lines[strings.TrimPrefix(flag, "--")]) > 0
}

// applyConfigFile sets the flags that the YAML file at path names, except
// those in set, which the command line set. The file is a mapping from flag
// names without dashes to a value, or to a list of values for a repeatable
// flag. A mistake names the file and line, and so can a later check of a
// value with the lines that applyConfigFile returns.
func applyConfigFile(fs *flag.FlagSet, path string, set map[string]bool) (*configLines, error) {
	data, err := os.ReadFile(path)
	if err != nil {
		return nil, fmt.Errorf("read --config file: %w", err)
	}
	var doc yaml.Node
	if err := yaml.Unmarshal(data, &doc); err != nil {
		return nil, yamlSyntaxError(path, err)
	}
	applied := &configLines{path: path, lines: make(map[string][]int)}
	if len(doc.Content) == 0 {
		return applied, nil
	}
	root := doc.Content[0]
	if root.Kind != yaml.MappingNode {
		return nil, fmt.Errorf("%s:%d: the file must be a mapping from flag names to values, such as \"tpm: /dev/tpmrm0\"", path, root.Line)
	}

	seen := make(map[string]int)
	for i := 0; i+1 < len(root.Content); i += 2 {
		key, value := root.Content[i], root.Content[i+1]
		name := key.Value
		if line, dup := seen[name]; dup {
			return nil, fmt.Errorf("%s:%d: %q is set again; it was set on line %d", path, key.Line, name, line)
		}
		seen[name] = key.Line

		if name == "check" {
			return nil, fmt.Errorf("%s:%d: \"check\" may be given only on the command line, because a file that sets it would stop vcomlink serve from serving", path, key.Line)
		}
		fl := fs.Lookup(name)
		if fl == nil || name == "config" {
			return nil, fmt.Errorf("%s:%d: unknown setting %q; the settings are the flags of vcomlink serve without their dashes (see vcomlink serve --help)", path, key.Line, name)
		}
		items, err := configValues(fl, value)
		if err != nil {
			return nil, fmt.Errorf("%s:%d: %s: %v", path, value.Line, name, err)
		}
		if set[name] {
			continue
		}
		for _, item := range items {
			if err := fl.Value.Set(item.Value); err != nil {
				return nil, fmt.Errorf("%s:%d: invalid %s %q: %v", path, item.Line, name, item.Value, explainValueError(fl, item.Value, err))
			}
			applied.lines[name] = append(applied.lines[name], item.Line)
		}
	}
	return applied, nil
}

// yamlSyntaxError writes an error of the YAML parser, such as "yaml: line
// 3: did not find expected key", in the FILE:LINE: form of the other
// mistakes in a --config file.
//
// NOTE: gopkg.in/yaml.v3 v3.0.1 reports some syntax errors, such as an
// unclosed bracket, one line before the line that holds the mistake.
func yamlSyntaxError(path string, err error) error {
	message := strings.TrimPrefix(err.Error(), "yaml: ")
	if rest, ok := strings.CutPrefix(message, "line "); ok {
		number, text, _ := strings.Cut(rest, ": ")
		if line, convErr := strconv.Atoi(number); convErr == nil && text != "" {
			return fmt.Errorf("%s:%d: invalid YAML: %s", path, line, text)
		}
	}
	return fmt.Errorf("%s: invalid YAML: %s", path, message)
}

// configValues returns the scalar nodes of one setting: one scalar, or a
// list of scalars for a repeatable flag.
func configValues(fl *flag.Flag, node *yaml.Node) ([]*yaml.Node, error) {
	switch node.Kind {
	case yaml.ScalarNode:
		return []*yaml.Node{node}, nil
	case yaml.SequenceNode:
		if _, ok := fl.Value.(repeatable); !ok {
			return nil, errors.New("takes one value, not a list")
		}
		for _, item := range node.Content {
			if item.Kind != yaml.ScalarNode {
				return nil, fmt.Errorf("line %d: each item must be a single value", item.Line)
			}
		}
		if len(node.Content) == 0 {
			return nil, errors.New("the list is empty")
		}
		return node.Content, nil
	}
	return nil, errors.New("must be a value or a list of values")
}
